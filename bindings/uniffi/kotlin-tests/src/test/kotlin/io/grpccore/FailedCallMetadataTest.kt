package io.grpccore

import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

private fun ascii(key: String, value: String) = MetadataEntry(key, MetadataValue.Ascii(value))

private fun List<MetadataEntry>.ascii(key: String): String? =
    (firstOrNull { it.key == key }?.value as? MetadataValue.Ascii)?.value

/**
 * A call that fails after the server sent its response headers keeps them on
 * `GrpcException.Status.initialMetadata`, apart from the trailers (grpcio's
 * `RpcError.initial_metadata()`); a trailers-only failure has none. The
 * server is ours: a handler that throws a status with `initialMetadata`
 * sends them as headers before the status.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FailedCallMetadataTest {
    private lateinit var server: Server
    private lateinit var channel: Channel
    private val opts = CallOptions(timeoutMs = 10_000u)

    @BeforeAll
    fun start() = runBlocking {
        server = Server(ServerOptions())
        server.addUnary("/m.S/HeadersThenFail", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray =
                throw GrpcException.Status(
                    StatusCode.FAILED_PRECONDITION, "cannot do it", ByteArray(0),
                    listOf(ascii("x-reason", "out of stock")),
                    listOf(ascii("x-init", "sent before failing"), MetadataEntry("x-init-bin", MetadataValue.Binary(byteArrayOf(4, 2)))),
                )
        })
        server.addUnary("/m.S/Fail", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray =
                throw GrpcException.Status(StatusCode.NOT_FOUND, "no such thing", ByteArray(0), listOf(ascii("x-reason", "quota")), emptyList())
        })
        channel = Channel(server.start("127.0.0.1:0"), ChannelOptions())
    }

    @AfterAll
    fun stop() = runBlocking {
        channel.shutdown()
        channel.close()
        server.shutdown(1000u)
    }

    private fun statusOf(e: Throwable): GrpcException.Status = e as? GrpcException.Status ?: error("not a status: $e")

    @Test
    fun unaryFailureAfterHeadersKeepsThem() {
        val e = statusOf(assertThrows<GrpcException> { runBlocking { channel.unary("/m.S/HeadersThenFail", ByteArray(1), opts) } })
        assertEquals(StatusCode.FAILED_PRECONDITION, e.code)
        assertEquals("cannot do it", e.statusMessage)
        assertEquals("sent before failing", e.initialMetadata.ascii("x-init"))
        val bin = e.initialMetadata.first { it.key == "x-init-bin" }.value as MetadataValue.Binary
        assertArrayEquals(byteArrayOf(4, 2), bin.value)
        assertEquals("out of stock", e.trailers.ascii("x-reason"))
        // Headers and trailers stay apart.
        assertTrue(e.initialMetadata.none { it.key == "x-reason" }, "trailer in headers: ${e.initialMetadata}")
        assertTrue(e.trailers.none { it.key.startsWith("x-init") }, "header in trailers: ${e.trailers}")
    }

    @Test
    fun streamingFailureAfterHeadersKeepsThem() = runBlocking {
        withTimeout(10_000) {
            val call = channel.startCall("/m.S/HeadersThenFail", opts)
            call.send(ByteArray(1))
            call.closeSend()
            assertEquals("sent before failing", call.initialMetadata().ascii("x-init"))
            val e = statusOf(assertThrows<GrpcException> { runBlocking { call.receive() } })
            assertEquals(StatusCode.FAILED_PRECONDITION, e.code)
            assertEquals("sent before failing", e.initialMetadata.ascii("x-init"))
            assertEquals("out of stock", e.trailers.ascii("x-reason"))
            assertTrue(e.trailers.none { it.key == "x-init" })
        }
    }

    @Test
    fun trailersOnlyFailureHasNoInitialMetadata() {
        val e = statusOf(assertThrows<GrpcException> { runBlocking { channel.unary("/m.S/Fail", ByteArray(1), opts) } })
        assertEquals(StatusCode.NOT_FOUND, e.code)
        assertEquals("quota", e.trailers.ascii("x-reason"))
        assertEquals(emptyList<MetadataEntry>(), e.initialMetadata)
    }
}
