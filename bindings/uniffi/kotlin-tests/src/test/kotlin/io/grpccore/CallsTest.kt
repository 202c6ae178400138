package io.grpccore

import io.grpccore.interop.Pb
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import java.io.File

private const val SVC = "/grpc.testing.TestService"

/** Every call kind, metadata, deadlines, cancellation, errors and TLS against our Rust interop server. */
class RustServerCallsTest : CallsTest(InteropServer.Kind.RUST)

/** The same against grpc-java's interop server (grpc-java 1.79.0 from Maven Central, see install-peers.sh). */
class JavaServerCallsTest : CallsTest(InteropServer.Kind.JAVA)

/** Every call kind, metadata, deadlines, cancellation, errors and TLS against one kind of interop server. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class CallsTest(private val kind: InteropServer.Kind) {
    private lateinit var plain: InteropServer
    private lateinit var secure: InteropServer
    private lateinit var channel: Channel

    @BeforeAll
    fun start() {
        // Both start at once (a JVM server takes seconds), then both are awaited.
        plain = InteropServer(kind, tls = false)
        secure = InteropServer(kind, tls = true)
        plain.awaitListening()
        secure.awaitListening()
        channel = Channel(plain.target, ChannelOptions())
    }

    @AfterAll
    fun stop() {
        channel.shutdown()
        channel.close()
        plain.close()
        secure.close()
    }

    private fun statusOf(e: GrpcException): GrpcException.Status = e as? GrpcException.Status ?: error("not a status: $e")

    @Test
    fun emptyUnary() = runBlocking {
        val r = channel.unary("$SVC/EmptyCall", ByteArray(0), CallOptions())
        assertEquals(0, r.message.size)
    }

    @Test
    fun largeUnary() = runBlocking {
        val r = channel.unary("$SVC/UnaryCall", Pb.simpleRequest(314159, 271828), CallOptions())
        assertEquals(314159, Pb.payloadSize(r.message))
    }

    @Test
    fun serverStreaming() = runBlocking {
        val sizes = listOf(31415, 9, 2653, 58979)
        val call = channel.startCall("$SVC/StreamingOutputCall", CallOptions())
        call.send(Pb.streamingOutputRequest(sizes))
        call.closeSend()
        val got = mutableListOf<Int>()
        while (true) got.add(Pb.payloadSize(call.receive() ?: break))
        assertEquals(sizes, got)
        assertEquals(StatusCode.OK, call.finish().code)
        assertEquals(StatusCode.OK, call.status()?.code)
    }

    @Test
    fun clientStreaming() = runBlocking {
        val call = channel.startCall("$SVC/StreamingInputCall", CallOptions())
        for (n in listOf(27182, 8, 1828, 45904)) call.send(Pb.streamingInputRequest(n))
        call.closeSend()
        val resp = call.receive()!!
        assertEquals(74922L, Pb.parse(resp)[1]!!.first())
        assertNull(call.receive())
        assertEquals(StatusCode.OK, call.finish().code)
    }

    @Test
    fun bidiPingPong() = runBlocking {
        val call = channel.startCall("$SVC/FullDuplexCall", CallOptions())
        val pairs = listOf(31415 to 27182, 9 to 8, 2653 to 1828, 58979 to 45904)
        for ((resp, req) in pairs) {
            call.send(Pb.streamingOutputRequest(listOf(resp), requestSize = req))
            assertEquals(resp, Pb.payloadSize(call.receive()!!))
        }
        call.closeSend()
        assertNull(call.receive())
        assertEquals(StatusCode.OK, call.finish().code)
    }

    @Test
    fun bidiConcurrentSendAndReceive() = runBlocking {
        val call = channel.startCall("$SVC/FullDuplexCall", CallOptions())
        val reader = async {
            var n = 0
            while (call.receive() != null) n++
            n
        }
        repeat(20) { call.send(Pb.streamingOutputRequest(listOf(100))) }
        call.closeSend()
        assertEquals(20, reader.await())
    }

    @Test
    fun metadataAsciiAndBinary() = runBlocking {
        val bin = byteArrayOf(0xab.toByte(), 0xab.toByte(), 0xab.toByte(), 0, 1)
        val opts = CallOptions(
            metadata = listOf(
                MetadataEntry("x-grpc-test-echo-initial", MetadataValue.Ascii("test_initial_metadata_value")),
                MetadataEntry("x-grpc-test-echo-trailing-bin", MetadataValue.Binary(bin)),
            ),
        )
        val r = channel.unary("$SVC/UnaryCall", Pb.simpleRequest(10), opts)
        val initial = r.initialMetadata.first { it.key == "x-grpc-test-echo-initial" }.value
        assertEquals(MetadataValue.Ascii("test_initial_metadata_value"), initial)
        val trailing = r.trailingMetadata.first { it.key == "x-grpc-test-echo-trailing-bin" }.value
        assertArrayEquals(bin, (trailing as MetadataValue.Binary).value)

        // The same on a streaming call: initialMetadata() and the trailers in the status.
        val call = channel.startCall("$SVC/FullDuplexCall", opts)
        call.send(Pb.streamingOutputRequest(listOf(5)))
        call.closeSend()
        assertTrue(call.initialMetadata().any { it.key == "x-grpc-test-echo-initial" })
        val st = call.finish()
        assertEquals(StatusCode.OK, st.code)
        val t = st.trailers.first { it.key == "x-grpc-test-echo-trailing-bin" }.value as MetadataValue.Binary
        assertArrayEquals(bin, t.value)
    }

    @Test
    fun statusCodeAndMessage() = runBlocking {
        val msg = "test status message \t\n\u2028 ünïcode"
        val e = assertThrows<GrpcException> {
            runBlocking { channel.unary("$SVC/UnaryCall", Pb.simpleRequest(1, status = 2 to msg), CallOptions()) }
        }
        val st = statusOf(e)
        assertEquals(StatusCode.UNKNOWN, st.code)
        assertEquals(msg, st.statusMessage)

        // On a streaming call the status comes from receive().
        val call = channel.startCall("$SVC/FullDuplexCall", CallOptions())
        call.send(Pb.Msg().msg(7, Pb.Msg().int(1, 9).bytes(2, "precondition".toByteArray())).build())
        call.closeSend()
        val e2 = assertThrows<GrpcException> { runBlocking { call.receive() } }
        assertEquals(StatusCode.FAILED_PRECONDITION, statusOf(e2).code)
        assertEquals(StatusCode.FAILED_PRECONDITION, call.finish().code)
    }

    @Test
    fun unimplementedMethod() = runBlocking {
        val e = assertThrows<GrpcException> {
            runBlocking { channel.unary("$SVC/UnimplementedCall", ByteArray(0), CallOptions()) }
        }
        assertEquals(StatusCode.UNIMPLEMENTED, statusOf(e).code)
    }

    @Test
    fun deadlineExceeded() = runBlocking {
        val call = channel.startCall("$SVC/StreamingOutputCall", CallOptions(timeoutMs = 200u))
        call.send(Pb.streamingOutputRequest(listOf(10, 10), intervalUs = 2_000_000))
        call.closeSend()
        val e = assertThrows<GrpcException> { runBlocking { while (call.receive() != null) Unit } }
        assertEquals(StatusCode.DEADLINE_EXCEEDED, statusOf(e).code)
    }

    @Test
    fun channelDefaultDeadline() = runBlocking {
        val ch = Channel(plain.target, ChannelOptions(defaultTimeoutMs = 150u))
        try {
            val call = ch.startCall("$SVC/FullDuplexCall", CallOptions())
            val e = assertThrows<GrpcException> { runBlocking { call.receive() } }
            assertEquals(StatusCode.DEADLINE_EXCEEDED, statusOf(e).code)
        } finally {
            ch.shutdown()
        }
    }

    @Test
    fun explicitCancel() = runBlocking {
        val call = channel.startCall("$SVC/FullDuplexCall", CallOptions())
        call.send(Pb.streamingOutputRequest(listOf(1)))
        assertEquals(1, Pb.payloadSize(call.receive()!!))
        val pending = async { runCatching { call.receive() } }
        delay(100)
        call.cancel()
        val e = withTimeout(5000) { pending.await() }.exceptionOrNull() as GrpcException
        assertEquals(StatusCode.CANCELLED, statusOf(e).code)
        assertEquals(StatusCode.CANCELLED, call.finish().code)
        val e2 = assertThrows<GrpcException> { runBlocking { call.send(ByteArray(0)) } }
        assertEquals(StatusCode.CANCELLED, statusOf(e2).code)
    }

    @Test
    fun compressedRequest() = runBlocking {
        val r = channel.unary(
            "$SVC/UnaryCall",
            Pb.simpleRequest(100, 1000, expectCompressed = true),
            CallOptions(compression = Compression.GZIP),
        )
        assertEquals(100, Pb.payloadSize(r.message))
    }

    @Test
    fun maxReceiveSize() = runBlocking {
        val ch = Channel(plain.target, ChannelOptions(maxRecvMessageSize = 1000u))
        try {
            val e = assertThrows<GrpcException> {
                runBlocking { ch.unary("$SVC/UnaryCall", Pb.simpleRequest(5000), CallOptions()) }
            }
            assertEquals(StatusCode.RESOURCE_EXHAUSTED, statusOf(e).code)
        } finally {
            ch.shutdown()
        }
    }

    @Test
    fun tlsWithTestCa() = runBlocking {
        val ca = File(secure.certs, "ca.pem").readText()
        val ch = Channel(secure.target, ChannelOptions(tls = TlsOptions(rootCertsPem = ca, serverNameOverride = "foo.test.google.fr")))
        try {
            ch.ready(10_000u)
            assertEquals(ConnectivityState.READY, ch.state())
            val r = ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1234, 10), CallOptions())
            assertEquals(1234, Pb.payloadSize(r.message))
            val call = ch.startCall("$SVC/FullDuplexCall", CallOptions())
            call.send(Pb.streamingOutputRequest(listOf(7)))
            assertEquals(7, Pb.payloadSize(call.receive()!!))
            call.closeSend()
            assertNull(call.receive())
        } finally {
            ch.shutdown()
        }
        assertEquals(ConnectivityState.SHUTDOWN, ch.state())
    }

    @Test
    fun tlsRejectsUntrustedServer() = runBlocking {
        // System roots do not trust the test CA.
        val ch = Channel(secure.target, ChannelOptions(tls = TlsOptions(serverNameOverride = "foo.test.google.fr")))
        try {
            val e = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/EmptyCall", ByteArray(0), CallOptions()) } }
            assertEquals(StatusCode.UNAVAILABLE, statusOf(e).code)
        } finally {
            ch.shutdown()
        }
    }
}
