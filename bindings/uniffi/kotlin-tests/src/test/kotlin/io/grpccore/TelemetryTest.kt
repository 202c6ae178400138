package io.grpccore

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.CopyOnWriteArrayList

private const val TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
private const val ROOT = "00f067aa0ba902b7"

/** Keeps every record. */
private class CollectingSink : TelemetrySink {
    val metrics = CopyOnWriteArrayList<MetricRecord>()
    val spans = CopyOnWriteArrayList<SpanRecord>()
    override fun onMetric(record: MetricRecord) {
        metrics.add(record)
    }
    override fun onSpan(record: SpanRecord) {
        spans.add(record)
    }
}

private fun traceparentOf(md: List<MetadataEntry>): String? =
    (md.firstOrNull { it.key == "traceparent" }?.value as MetadataValue.Ascii?)?.value

private fun ascii(key: String, value: String) = MetadataEntry(key, MetadataValue.Ascii(value))

/**
 * Telemetry from Kotlin: a Kotlin client calls a Kotlin server (Mid) whose handler calls a second
 * Kotlin server (Leaf), all recording into one collecting sink. The spans form one trace under the
 * client's `traceparent`, and the A66 metrics carry method, target and status.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TelemetryTest {
    private val sink = CollectingSink()
    private val telemetry = Telemetry(sink, metrics = true, tracing = true)
    private lateinit var leaf: Server
    private lateinit var mid: Server
    private lateinit var leafTarget: String
    private lateinit var midTarget: String
    private lateinit var toLeaf: Channel

    /** The traceparent the Leaf handler saw in its metadata and the one it got in its context. */
    private val leafSaw = CopyOnWriteArrayList<Pair<String?, String?>>()

    @BeforeAll
    fun start() = runBlocking {
        leaf = Server(ServerOptions(telemetry = telemetry))
        leaf.addUnary("/hop.S/Leaf", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray {
                leafSaw.add(traceparentOf(context.metadata) to context.traceparent)
                return request + request
            }
        })
        leaf.addUnary("/hop.S/Echo", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray = request + request
        })
        leaf.addUnary("/hop.S/Fail", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray =
                throw GrpcException.Status(StatusCode.FAILED_PRECONDITION, "not now", ByteArray(0), listOf(ascii("why", "test")), emptyList())
        })
        leafTarget = leaf.start("127.0.0.1:0")
        toLeaf = Channel(leafTarget, ChannelOptions(telemetry = telemetry))
        mid = Server(ServerOptions(telemetry = telemetry))
        mid.addUnary("/hop.S/Mid", object : UnaryHandler {
            override suspend fun handle(context: ServerCallContext, request: ByteArray): ByteArray {
                val tp = context.traceparent ?: throw GrpcException.Status(StatusCode.INTERNAL, "no traceparent", ByteArray(0), listOf(), listOf())
                return toLeaf.unary("/hop.S/Leaf", request, CallOptions(metadata = listOf(ascii("traceparent", tp)))).message
            }
        })
        midTarget = mid.start("127.0.0.1:0")
    }

    @AfterAll
    fun stop() = runBlocking {
        toLeaf.shutdown()
        mid.shutdown(1000u)
        leaf.shutdown(1000u)
    }

    /** Waits (bounded) until `done` holds over what the sink got; the server records after the client returns. */
    private fun awaitRecords(what: String, done: () -> Boolean) {
        val until = System.nanoTime() + 10_000_000_000L
        while (!done()) {
            assertTrue(System.nanoTime() < until, "timed out waiting for $what; spans ${sink.spans.map { it.name }}")
            assertTrue(telemetry.flush(1000u), "flush")
            Thread.sleep(10)
        }
    }

    private fun MetricRecord.attr(key: String) = attributes.firstOrNull { it.key == key }?.value

    private fun metrics(name: String, method: String) = sink.metrics.filter { it.name == name && it.attr("grpc.method") == method }

    private fun span(name: String, trace: String) = sink.spans.filter { it.name == name && it.traceId == trace }.let {
        assertEquals(1, it.size, "one $name in trace $trace; all: ${sink.spans.map { s -> s.name }}")
        it[0]
    }

    @Test
    fun threeHopsMakeOneTraceAndA66Metrics() = runBlocking {
        Channel(midTarget, ChannelOptions(telemetry = telemetry)).use { ch ->
            val opts = CallOptions(metadata = listOf(ascii("traceparent", "00-$TRACE-$ROOT-01")))
            val r = ch.unary("/hop.S/Mid", ByteArray(10) { 'q'.code.toByte() }, opts)
            assertEquals(20, r.message.size, "the leaf doubled the request")
            ch.shutdown()
        }
        awaitRecords("six spans and two server durations") {
            sink.spans.count { it.traceId == TRACE } >= 6 &&
                metrics("grpc.server.call.duration", "hop.S/Mid").isNotEmpty() &&
                metrics("grpc.server.call.duration", "hop.S/Leaf").isNotEmpty()
        }

        // ---- spans: ROOT → Sent → Attempt → Recv (Mid) → Sent → Attempt → Recv (Leaf) ----
        var parent = ROOT
        for (name in listOf("Sent.hop.S/Mid", "Attempt.hop.S/Mid", "Recv.hop.S/Mid", "Sent.hop.S/Leaf", "Attempt.hop.S/Leaf", "Recv.hop.S/Leaf")) {
            val s = span(name, TRACE)
            assertEquals(parent, s.parentSpanId, "$name's parent")
            assertEquals(name.startsWith("Sent.") || name.startsWith("Recv."), s.parentIsRemote, "$name: parent from a traceparent")
            assertTrue(Regex("[0-9a-f]{16}").matches(s.spanId), s.spanId)
            assertNotEquals(parent, s.spanId)
            assertTrue(s.endTimeUnixNano >= s.startTimeUnixNano, name)
            assertEquals(SpanStatus.Unset, s.status, name)
            parent = s.spanId
        }
        assertEquals(SpanKind.CLIENT, span("Sent.hop.S/Mid", TRACE).kind)
        assertEquals(SpanKind.INTERNAL, span("Attempt.hop.S/Mid", TRACE).kind)
        assertEquals(SpanKind.SERVER, span("Recv.hop.S/Leaf", TRACE).kind)
        assertTrue(
            span("Recv.hop.S/Leaf", TRACE).attributes.contains(SpanAttribute("rpc.grpc.status_code", AttributeValue.I64(0))),
            span("Recv.hop.S/Leaf", TRACE).attributes.toString(),
        )
        val outbound = span("Attempt.hop.S/Mid", TRACE).events.filter { it.name == "Outbound message" }
        assertEquals(1, outbound.size)
        assertTrue(outbound[0].attributes.contains(SpanAttribute("message-size", AttributeValue.I64(10))), outbound[0].attributes.toString())

        // The Leaf handler saw the Leaf attempt as its metadata's traceparent, and its context has its own Recv. span.
        val (inMetadata, inContext) = leafSaw.single()
        assertEquals("00-$TRACE-${span("Attempt.hop.S/Leaf", TRACE).spanId}-01", inMetadata)
        assertEquals("00-$TRACE-${span("Recv.hop.S/Leaf", TRACE).spanId}-01", inContext)

        // ---- metrics: the A66 instruments with method, target and status ----
        for ((method, target) in listOf("hop.S/Mid" to midTarget, "hop.S/Leaf" to leafTarget)) {
            val started = metrics("grpc.client.attempt.started", method)
            assertEquals(1, started.size, "$method attempts")
            assertEquals(InstrumentKind.COUNTER, started[0].kind)
            assertEquals(MetricValue.U64(1u), started[0].value)
            assertEquals(target, started[0].attr("grpc.target"))
            for (name in listOf("grpc.client.attempt.duration", "grpc.client.call.duration")) {
                val d = metrics(name, method).single()
                assertEquals(InstrumentKind.HISTOGRAM, d.kind)
                assertEquals("s", d.unit)
                assertEquals(41, d.boundaries.size, "A66 latency buckets")
                assertEquals(target, d.attr("grpc.target"))
                assertEquals("OK", d.attr("grpc.status"))
                val secs = (d.value as MetricValue.F64).value
                assertTrue(secs > 0.0 && secs < 20.0, "$name $secs")
            }
            assertEquals(1, metrics("grpc.server.call.started", method).size, "$method server calls")
            val serverDuration = metrics("grpc.server.call.duration", method).single()
            assertEquals("OK", serverDuration.attr("grpc.status"))
            assertNull(serverDuration.attr("grpc.target"), "no target on the server")
        }
        val sent = metrics("grpc.client.attempt.sent_total_compressed_message_size", "hop.S/Mid").single()
        assertEquals(MetricValue.U64(10u), sent.value)
        assertEquals("By", sent.unit)
        assertEquals(MetricValue.U64(20u), metrics("grpc.server.call.sent_total_compressed_message_size", "hop.S/Leaf").single().value)

        assertEquals(0uL, telemetry.dropped())
    }

    @Test
    fun failuresAndRootSpans() = runBlocking {
        Channel(leafTarget, ChannelOptions(telemetry = telemetry)).use { ch ->
            val e = assertThrows<GrpcException.Status> { runBlocking { ch.unary("/hop.S/Fail", ByteArray(3), CallOptions()) } }
            assertEquals(StatusCode.FAILED_PRECONDITION, e.code)
            assertEquals("not now", e.statusMessage)
            assertEquals(listOf(ascii("why", "test")), e.trailers.filter { it.key == "why" })
            val u = assertThrows<GrpcException.Status> { runBlocking { ch.unary("/hop.S/Nope", ByteArray(0), CallOptions()) } }
            assertEquals(StatusCode.UNIMPLEMENTED, u.code)
            ch.shutdown()
        }
        awaitRecords("the failed calls' durations") {
            metrics("grpc.server.call.duration", "hop.S/Fail").isNotEmpty() && metrics("grpc.client.call.duration", "hop.S/Nope").isNotEmpty()
        }
        val failed = metrics("grpc.client.call.duration", "hop.S/Fail").single()
        assertEquals("FAILED_PRECONDITION", failed.attr("grpc.status"))
        assertEquals(leafTarget, failed.attr("grpc.target"))
        assertEquals("FAILED_PRECONDITION", metrics("grpc.server.call.duration", "hop.S/Fail").single().attr("grpc.status"))
        // An unregistered method (no fallback handler): the client records it, the server never
        // names it (A66: at most `other`).
        assertEquals("UNIMPLEMENTED", metrics("grpc.client.call.duration", "hop.S/Nope").single().attr("grpc.status"))
        assertTrue(sink.metrics.none { it.name.startsWith("grpc.server.") && it.attr("grpc.method") == "hop.S/Nope" })

        // Without a traceparent the client's Sent. span is a root, its own trace.
        val sent = sink.spans.single { it.name == "Sent.hop.S/Fail" }
        assertNull(sent.parentSpanId)
        assertTrue(Regex("[0-9a-f]{32}").matches(sent.traceId), sent.traceId)
        assertNotEquals(TRACE, sent.traceId)
        assertTrue(sent.status is SpanStatus.Error, sent.status.toString())
        assertTrue((sent.status as SpanStatus.Error).description.contains("not now"), sent.status.toString())
        val recv = span("Recv.hop.S/Fail", sent.traceId)
        assertEquals(span("Attempt.hop.S/Fail", sent.traceId).spanId, recv.parentSpanId)
    }

    @Test
    fun aThrowingSinkLosesOnlyItsRecords() = runBlocking {
        val got = CopyOnWriteArrayList<String>()
        val throwing = Telemetry(object : TelemetrySink {
            override fun onMetric(record: MetricRecord) {
                got.add(record.name)
                throw IllegalStateException("sink bug")
            }
            override fun onSpan(record: SpanRecord): Unit = throw IllegalStateException("sink bug")
        }, metrics = true, tracing = true)
        Channel(leafTarget, ChannelOptions(telemetry = throwing)).use { ch ->
            repeat(2) { assertEquals(2, ch.unary("/hop.S/Echo", ByteArray(1), CallOptions()).message.size) }
            ch.shutdown()
        }
        assertTrue(throwing.flush(5000u), "the delivery thread survived")
        // Each call records attempt.started, two sizes, attempt.duration, call.duration: all delivered.
        assertEquals(2, got.count { it == "grpc.client.attempt.started" }, got.toString())
        assertEquals(2, got.count { it == "grpc.client.call.duration" }, got.toString())
        throwing.close()
    }

    @Test
    fun aBlockedSinkDelaysNoCall() = runBlocking {
        val release = java.util.concurrent.CountDownLatch(1)
        val got = CopyOnWriteArrayList<String>()
        val blocked = Telemetry(object : TelemetrySink {
            override fun onMetric(record: MetricRecord) {
                release.await(20, java.util.concurrent.TimeUnit.SECONDS)
                got.add(record.name)
            }
            override fun onSpan(record: SpanRecord) {
                release.await(20, java.util.concurrent.TimeUnit.SECONDS)
                got.add(record.name)
            }
        }, metrics = true, tracing = true)
        Channel(leafTarget, ChannelOptions(telemetry = blocked)).use { ch ->
            // The sink is stuck on the first record: the calls must not wait for it (they would
            // if records were delivered on the engine's threads).
            val t0 = System.nanoTime()
            repeat(5) { assertEquals(2, ch.unary("/hop.S/Echo", ByteArray(1), CallOptions()).message.size) }
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertTrue(ms < 10_000, "5 calls took $ms ms")
            assertTrue(got.isEmpty(), got.toString())
            assertTrue(!blocked.flush(200u), "flush times out while the sink is stuck")
            release.countDown()
            assertTrue(blocked.flush(5000u), "flushed once released")
            assertEquals(5, got.count { it == "grpc.client.attempt.started" }, got.toString())
            assertEquals(5, got.count { it == "Sent.hop.S/Echo" }, got.toString())
            ch.shutdown()
        }
        blocked.close()
    }
}
