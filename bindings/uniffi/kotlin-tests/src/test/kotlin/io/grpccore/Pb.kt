package io.grpccore

import java.io.ByteArrayOutputStream

/** Just enough protobuf wire format for grpc.testing messages (tests carry bytes, as apps would with their protobuf library). */
object Pb {
    class Msg {
        private val out = ByteArrayOutputStream()
        private fun varint(v: Long) {
            var x = v
            while (x and 0x7fL.inv() != 0L) {
                out.write(((x and 0x7f) or 0x80).toInt())
                x = x ushr 7
            }
            out.write(x.toInt())
        }
        fun int(field: Int, v: Long) = apply { varint((field shl 3).toLong()); varint(v) }
        fun bytes(field: Int, v: ByteArray) = apply { varint(((field shl 3) or 2).toLong()); varint(v.size.toLong()); out.write(v) }
        fun msg(field: Int, m: Msg) = bytes(field, m.build())
        fun build(): ByteArray = out.toByteArray()
    }

    /** Field number -> values (Long for varints, ByteArray for length-delimited). */
    fun parse(b: ByteArray): Map<Int, List<Any>> {
        val r = mutableMapOf<Int, MutableList<Any>>()
        var i = 0
        fun varint(): Long {
            var shift = 0; var v = 0L
            while (true) {
                val c = b[i++].toInt() and 0xff
                v = v or ((c and 0x7f).toLong() shl shift)
                if (c < 0x80) return v
                shift += 7
            }
        }
        while (i < b.size) {
            val key = varint()
            val field = (key ushr 3).toInt()
            when ((key and 7).toInt()) {
                0 -> r.getOrPut(field) { mutableListOf() }.add(varint())
                2 -> { val n = varint().toInt(); r.getOrPut(field) { mutableListOf() }.add(b.copyOfRange(i, i + n)); i += n }
                else -> error("unsupported wire type")
            }
        }
        return r
    }

    fun payload(size: Int) = Msg().bytes(2, ByteArray(size))

    fun simpleRequest(responseSize: Int, requestSize: Int = 0, status: Pair<Int, String>? = null, expectCompressed: Boolean = false): ByteArray {
        val m = Msg().int(2, responseSize.toLong()).msg(3, payload(requestSize))
        if (status != null) m.msg(7, Msg().int(1, status.first.toLong()).bytes(2, status.second.toByteArray()))
        if (expectCompressed) m.msg(8, Msg().int(1, 1))
        return m.build()
    }

    fun streamingOutputRequest(sizes: List<Int>, intervalUs: Long = 0, requestSize: Int = 0): ByteArray {
        val m = Msg()
        for (s in sizes) m.msg(2, Msg().int(1, s.toLong()).int(2, intervalUs))
        if (requestSize > 0) m.msg(3, payload(requestSize))
        return m.build()
    }

    fun streamingInputRequest(size: Int) = Msg().msg(1, payload(size)).build()

    /** Size of the payload body in a SimpleResponse / StreamingOutputCallResponse (field 1). */
    fun payloadSize(resp: ByteArray): Int {
        val p = parse(resp)[1]?.first() as ByteArray? ?: return 0
        return (parse(p)[2]?.first() as ByteArray?)?.size ?: 0
    }
}
