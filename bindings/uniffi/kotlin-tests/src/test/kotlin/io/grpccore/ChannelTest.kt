package io.grpccore

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

private const val SVC = "/grpc.testing.TestService"

/** What needs no server: local misuse and a port where nothing listens. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ChannelTest {
    // Nothing listens here: calls that get past local validation fail UNAVAILABLE.
    private val port = java.net.ServerSocket(0).use { it.localPort }
    private val channel = Channel("127.0.0.1:$port", ChannelOptions())

    @AfterAll
    fun stop() {
        channel.shutdown()
        channel.close()
    }

    private fun statusOf(e: GrpcException): GrpcException.Status = e as? GrpcException.Status ?: error("not a status: $e")

    @Test
    fun apiErrors() = runBlocking {
        val e = assertThrows<GrpcException> {
            runBlocking {
                channel.unary("$SVC/EmptyCall", ByteArray(0), CallOptions(metadata = listOf(MetadataEntry("Bad Key", MetadataValue.Ascii("v")))))
            }
        }
        assertTrue(e is GrpcException.Api, e.toString())
        assertThrows<GrpcException.Api> { Channel("127.0.0.1:1", ChannelOptions(tls = TlsOptions(rootCertsPem = "not a pem"))) }
        Unit
    }

    @Test
    fun unavailableWhenNothingListens() = runBlocking {
        val e = assertThrows<GrpcException> { runBlocking { channel.unary("$SVC/EmptyCall", ByteArray(0), CallOptions()) } }
        assertEquals(StatusCode.UNAVAILABLE, statusOf(e).code)
    }
}
