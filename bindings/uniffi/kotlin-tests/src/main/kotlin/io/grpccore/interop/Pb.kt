package io.grpccore.interop

import java.io.ByteArrayOutputStream

/**
 * Just enough protobuf wire format for grpc.testing messages. The binding carries bytes, as an
 * app would with its protobuf library; hand-encoding keeps the tests and the interop client free
 * of generated code.
 */
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
            var shift = 0
            var v = 0L
            while (true) {
                require(i < b.size && shift < 64) { "truncated varint" }
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
                2 -> {
                    val n = varint().toInt()
                    require(n >= 0 && i + n <= b.size) { "truncated field $field" }
                    r.getOrPut(field) { mutableListOf() }.add(b.copyOfRange(i, i + n))
                    i += n
                }
                else -> error("unsupported wire type in field $field")
            }
        }
        return r
    }

    /** grpc.testing.Payload { type = COMPRESSABLE (0, omitted); body = `size` zeros }. */
    fun payload(size: Int) = Msg().bytes(2, ByteArray(size))

    /** grpc.testing.EchoStatus { code = 1; message = 2 }. */
    fun echoStatus(code: Int, message: String) = Msg().int(1, code.toLong()).bytes(2, message.toByteArray())

    /** grpc.testing.SimpleRequest: response_size 2, payload 3, response_status 7, expect_compressed 8. */
    fun simpleRequest(responseSize: Int, requestSize: Int = 0, status: Pair<Int, String>? = null, expectCompressed: Boolean = false): ByteArray {
        val m = Msg()
        if (responseSize > 0) m.int(2, responseSize.toLong())
        if (requestSize > 0) m.msg(3, payload(requestSize))
        if (status != null) m.msg(7, echoStatus(status.first, status.second))
        if (expectCompressed) m.msg(8, Msg().int(1, 1))
        return m.build()
    }

    /** grpc.testing.StreamingOutputCallRequest: response_parameters 2 (size 1, interval_us 2), payload 3, response_status 7. */
    fun streamingOutputRequest(sizes: List<Int>, intervalUs: Long = 0, requestSize: Int = 0, status: Pair<Int, String>? = null): ByteArray {
        val m = Msg()
        for (s in sizes) {
            val p = Msg().int(1, s.toLong())
            if (intervalUs > 0) p.int(2, intervalUs)
            m.msg(2, p)
        }
        if (requestSize > 0) m.msg(3, payload(requestSize))
        if (status != null) m.msg(7, echoStatus(status.first, status.second))
        return m.build()
    }

    /** grpc.testing.StreamingInputCallRequest { payload = 1 }. */
    fun streamingInputRequest(size: Int) = Msg().msg(1, payload(size)).build()

    /** Size of the payload body in a SimpleResponse / StreamingOutputCallResponse (field 1). */
    fun payloadSize(resp: ByteArray): Int {
        val p = parse(resp)[1]?.first() as ByteArray? ?: return 0
        return (parse(p)[2]?.first() as ByteArray?)?.size ?: 0
    }

    /**
     * Checks the payload (field 1) of a SimpleResponse / StreamingOutputCallResponse: type
     * COMPRESSABLE and `size` zero bytes. Returns null if it is right, else what is wrong.
     */
    fun payloadProblem(resp: ByteArray, size: Int): String? {
        val p = parse(resp)[1]?.first() as ByteArray? ?: return "no payload, want $size bytes"
        val fields = parse(p)
        val type = fields[1]?.last() as Long? ?: 0L
        if (type != 0L) return "payload type $type, want COMPRESSABLE (0)"
        val body = fields[2]?.last() as ByteArray? ?: ByteArray(0)
        if (body.size != size) return "payload of ${body.size} bytes, want $size"
        if (body.any { it != 0.toByte() }) return "payload bytes are not all zero"
        return null
    }

    /** StreamingInputCallResponse.aggregated_payload_size (field 1). */
    fun aggregatedPayloadSize(resp: ByteArray): Long = parse(resp)[1]?.first() as Long? ?: 0L
}
