package io.grpccore

import io.grpccore.interop.Pb
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

private const val SVC = "/grpc.testing.TestService"
private const val ROUND_ROBIN = """{"loadBalancingConfig": [{"round_robin": {}}]}"""

/** Service config, round_robin, failover, retries and the manual resolver, against several interop servers. */
class LoadBalancingTest {
    /** A SimpleRequest with fill_server_id (field 9); `status` makes the server fail the call with it. */
    private fun idRequest(status: Pair<Int, String>? = null): ByteArray {
        val m = Pb.Msg().int(9, 1)
        if (status != null) m.msg(7, Pb.Msg().int(1, status.first.toLong()).bytes(2, status.second.toByteArray()))
        return m.build()
    }

    /** The answering backend's server_id (SimpleResponse field 4: the server's pid). */
    private suspend fun backendOf(ch: Channel, waitForReady: Boolean = false): String {
        val r = ch.unary("$SVC/UnaryCall", idRequest(), CallOptions(timeoutMs = 5000u, waitForReady = waitForReady))
        return String(Pb.parse(r.message)[4]?.first() as ByteArray? ?: error("no server_id"))
    }

    private fun servers(n: Int): List<InteropServer> =
        List(n) { InteropServer(InteropServer.Kind.RUST, tls = false) }.onEach { it.awaitListening() }

    private fun deadPort(): Int = java.net.ServerSocket(0).use { it.localPort }

    private fun statusOf(e: Throwable): GrpcException.Status = e as? GrpcException.Status ?: error("not a status: $e")

    @Test
    fun roundRobinSpreadsAndFailsOver() = runBlocking {
        val backends = servers(3)
        val target = "ipv4:" + backends.joinToString(",") { "127.0.0.1:${it.port}" }
        val ch = Channel(target, ChannelOptions(serviceConfig = ROUND_ROBIN))
        try {
            ch.ready(10_000u)
            // Wait for all three subchannels (the policy picks only READY ones).
            val until = System.nanoTime() + 10_000_000_000L
            while (ch.subchannels().count { it.state == ConnectivityState.READY } < 3) {
                check(System.nanoTime() < until) { "subchannels: ${ch.subchannels()}" }
                delay(20)
            }
            assertEquals(backends.map { "127.0.0.1:${it.port}" }.toSet(), ch.subchannels().map { it.address }.toSet())
            val counts = List(30) { backendOf(ch) }.groupingBy { it }.eachCount()
            assertEquals(3, counts.size, "$counts")
            assertTrue(counts.values.all { it == 10 }, "round_robin is exact over READY subchannels: $counts")

            // Kill one: once the policy sees it, no call fails and the other two share the load.
            val victim = backends[0]
            victim.close()
            val until2 = System.nanoTime() + 10_000_000_000L
            while (ch.subchannels().any { it.address == "127.0.0.1:${victim.port}" && it.state == ConnectivityState.READY }) {
                check(System.nanoTime() < until2) { "subchannels: ${ch.subchannels()}" }
                delay(20)
            }
            val after = List(20) { backendOf(ch) }.groupingBy { it }.eachCount()
            assertEquals(2, after.size, "$after")
            assertTrue(after.values.all { it == 10 }, "$after")
            assertEquals(ConnectivityState.READY, ch.state())
        } finally {
            ch.shutdown(); ch.close()
            backends.forEach { it.close() }
        }
    }

    @Test
    fun pickFirstSkipsADeadAddress() = runBlocking {
        val live = servers(1).single()
        val ch = Channel("ipv4:127.0.0.1:${deadPort()},127.0.0.1:${live.port}", ChannelOptions())
        try {
            val ids = List(5) { backendOf(ch) }.toSet()
            assertEquals(1, ids.size)
            assertEquals(ConnectivityState.READY, ch.state())
        } finally {
            ch.shutdown(); ch.close()
            live.close()
        }
    }

    @Test
    fun retryPolicyRetriesOnlyRetryableCodes() = runBlocking {
        val backend = servers(1).single()
        // Each attempt failing with a retryable code takes a token; an OK call gives one back.
        val config = """{"methodConfig": [{"name": [{"service": "grpc.testing.TestService"}],
            "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
              "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
          "retryThrottling": {"maxTokens": 10, "tokenRatio": 1}}"""
        val ch = Channel(backend.target, ChannelOptions(serviceConfig = config))
        try {
            assertEquals(10.0, ch.retryTokens())
            val e = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", idRequest(14 to "down"), CallOptions()) } }
            assertEquals(StatusCode.UNAVAILABLE, statusOf(e).code)
            assertEquals(7.0, ch.retryTokens(), "three attempts, each failed")
            // INTERNAL is not retryable: one attempt, no token taken.
            val e2 = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", idRequest(13 to "bug"), CallOptions()) } }
            assertEquals(StatusCode.INTERNAL, statusOf(e2).code)
            assertEquals(7.0, ch.retryTokens())
            backendOf(ch)
            assertEquals(8.0, ch.retryTokens())
            // A bad service config is an API error.
            assertThrows<GrpcException.Api> { Channel(backend.target, ChannelOptions(serviceConfig = "{not json")) }
            Unit
        } finally {
            ch.shutdown(); ch.close()
            backend.close()
        }
    }

    @Test
    fun manualResolverMovesAFailingChannelToALiveServer() = runBlocking {
        val (a, b) = servers(2)
        val resolver = ManualResolver()
        val ch = Channel("manual:///backend", ChannelOptions(manualResolver = resolver, serviceConfig = ROUND_ROBIN))
        try {
            resolver.update(listOf("127.0.0.1:${deadPort()}"))
            // Nothing listens: once the channel has tried, fail-fast calls fail UNAVAILABLE.
            val e = assertThrows<GrpcException> { runBlocking { backendOf(ch) } }
            assertEquals(StatusCode.UNAVAILABLE, statusOf(e).code)
            val until0 = System.nanoTime() + 5_000_000_000L
            while (resolver.resolveNowCount() == 0uL) {
                check(System.nanoTime() < until0) { "the channel never asked for re-resolution" }
                delay(20)
            }

            resolver.update(listOf("127.0.0.1:${a.port}"))
            assertEquals(listOf("127.0.0.1:${a.port}"), resolver.addresses())
            // The first call after the update waits for the channel to be ready (it races with it).
            val first = backendOf(ch, waitForReady = true)
            assertEquals(setOf(first), List(5) { backendOf(ch) }.toSet())

            // Move it again: calls go to b only, once a's subchannel is gone.
            resolver.update(listOf("127.0.0.1:${b.port}"))
            val until = System.nanoTime() + 10_000_000_000L
            while (ch.subchannels().map { it.address } != listOf("127.0.0.1:${b.port}") ||
                ch.subchannels().single().state != ConnectivityState.READY) {
                check(System.nanoTime() < until) { "subchannels: ${ch.subchannels()}" }
                delay(20)
            }
            val second = List(5) { backendOf(ch) }.toSet()
            assertEquals(1, second.size)
            assertTrue(first !in second)
            assertThrows<GrpcException.Api> { resolver.update(listOf("not an address")) }
            assertThrows<GrpcException.Api> { Channel("manual:///x", ChannelOptions()) }
            Unit
        } finally {
            ch.shutdown(); ch.close()
            a.close(); b.close()
        }
    }
}
