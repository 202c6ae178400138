// The gRPC interop client (grpc.testing.TestService, the cases of grpc's
// doc/interop-test-descriptions.md that grpc-go's client runs) in Kotlin over the UniFFI binding.
//
// Flags are grpc-go's: --server_host (localhost) --server_port (10000) --test_case (large_unary)
// --use_tls --use_test_ca --ca_file ($GRPC_INTEROP_CERTS_DIR/ca.pem) --server_host_override
// (foo.test.google.fr with the test CA) and the --soak_* flags; others are ignored with a warning.
// Prints `PASS <case>` and exits 0, or `FAIL <case>: <why>` and exits 1 (2 for bad flags).
package io.grpccore.interop

import io.grpccore.CallOptions
import io.grpccore.Channel
import io.grpccore.ChannelOptions
import io.grpccore.GrpcException
import io.grpccore.MetadataEntry
import io.grpccore.MetadataValue
import io.grpccore.StatusCode
import io.grpccore.TlsOptions
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import java.io.File
import kotlin.system.exitProcess

private const val SVC = "/grpc.testing.TestService"
private const val EMPTY_CALL = "$SVC/EmptyCall"
private const val UNARY_CALL = "$SVC/UnaryCall"
private const val STREAMING_INPUT_CALL = "$SVC/StreamingInputCall"
private const val STREAMING_OUTPUT_CALL = "$SVC/StreamingOutputCall"
private const val FULL_DUPLEX_CALL = "$SVC/FullDuplexCall"
private const val UNIMPLEMENTED_CALL = "$SVC/UnimplementedCall"
private const val UNIMPLEMENTED_SERVICE_CALL = "/grpc.testing.UnimplementedService/UnimplementedCall"
private const val ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
private const val ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"

private val REQ_SIZES = listOf(27182, 8, 1828, 45904)
private val RESP_SIZES = listOf(31415, 9, 2653, 58979)
private const val LARGE_REQ = 271828
private const val LARGE_RESP = 314159

/** Every case this client runs (grpc-go's client's list, less the Google-auth, ORCA and pick_first cases). */
val CASES = listOf(
    "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
    "timeout_on_sleeping_server", "cancel_after_begin", "cancel_after_first_response",
    "status_code_and_message", "special_status_message", "custom_metadata", "unimplemented_method",
    "unimplemented_service", "rpc_soak", "channel_soak",
)

private val BOOL_FLAGS = setOf("use_tls", "use_test_ca", "use_alts")
private val KNOWN_FLAGS = setOf(
    "server_host", "server_port", "test_case", "ca_file", "server_host_override",
    "soak_iterations", "soak_max_failures", "soak_per_iteration_max_acceptable_latency_ms",
    "soak_overall_timeout_seconds", "soak_min_time_ms_between_rpcs", "soak_request_size",
    "soak_response_size", "soak_num_threads",
) + BOOL_FLAGS

/** A test failure: the case ran and something was wrong. */
class Failure(message: String) : Exception(message)

private inline fun ensure(cond: Boolean, why: () -> String) {
    if (!cond) throw Failure(why())
}

/** `-name=value`, `--name=value`, `--name value`; a bare bool flag means true. */
fun parseFlags(args: Array<String>): Map<String, String> {
    val out = mutableMapOf<String, String>()
    var i = 0
    while (i < args.size) {
        val a = args[i++]
        require(a.startsWith("-")) { "unexpected argument $a" }
        val body = a.trimStart('-')
        val eq = body.indexOf('=')
        when {
            eq >= 0 -> out[body.substring(0, eq)] = body.substring(eq + 1)
            body in BOOL_FLAGS -> out[body] = "true"
            i < args.size -> out[body] = args[i++]
            else -> throw IllegalArgumentException("flag $a needs a value")
        }
    }
    return out
}

private fun Map<String, String>.bool(name: String): Boolean = when (val v = this[name] ?: "false") {
    "true", "1" -> true
    "false", "0" -> false
    else -> throw IllegalArgumentException("--$name=$v is not a bool")
}

private fun Map<String, String>.int(name: String, default: Int): Int =
    this[name]?.let { it.toIntOrNull() ?: throw IllegalArgumentException("--$name=$it is not an integer") } ?: default

private fun GrpcException.Status.describe() = "${code.name} (${code.ordinal}): \"$statusMessage\""

private fun GrpcException.describe() = when (this) {
    is GrpcException.Status -> describe()
    is GrpcException.Api -> "API error: $reason"
}

/** Runs `block`; a failed RPC becomes a [Failure] that says which step failed. */
private suspend fun <T> step(what: String, block: suspend () -> T): T =
    try {
        block()
    } catch (e: GrpcException) {
        throw Failure("$what: ${e.describe()}")
    }

/** The status of a call that must fail: `block` throwing a status, or a [Failure] if it succeeded. */
private suspend fun expectStatus(what: String, block: suspend () -> Unit): GrpcException.Status {
    try {
        block()
    } catch (e: GrpcException.Status) {
        return e
    } catch (e: GrpcException.Api) {
        throw Failure("$what: want an RPC status, got API error: ${e.reason}")
    }
    throw Failure("$what: succeeded, want an error status")
}

private fun check(resp: ByteArray, size: Int, what: String) {
    Pb.payloadProblem(resp, size)?.let { throw Failure("$what: $it") }
}

class InteropClient(private val flags: Map<String, String>) : AutoCloseable {
    private val target: String
    private val options: ChannelOptions
    private val channel: Channel

    init {
        require(!flags.bool("use_alts")) { "--use_alts is not supported" }
        val host = flags["server_host"] ?: "localhost"
        val port = flags.int("server_port", 10000)
        target = if (host.contains(':') && !host.startsWith("[")) "[$host]:$port" else "$host:$port"
        val tls = if (flags.bool("use_tls")) {
            val useTestCa = flags.bool("use_test_ca")
            val roots = if (useTestCa) {
                val path = flags["ca_file"] ?: run {
                    val dir = System.getenv("GRPC_INTEROP_CERTS_DIR")
                        ?: throw IllegalArgumentException("--use_test_ca needs --ca_file or GRPC_INTEROP_CERTS_DIR")
                    File(dir, "ca.pem").path
                }
                File(path).readText()
            } else {
                null
            }
            val override = flags["server_host_override"] ?: if (useTestCa) "foo.test.google.fr" else null
            TlsOptions(rootCertsPem = roots, serverNameOverride = override)
        } else {
            null
        }
        options = ChannelOptions(tls = tls)
        channel = Channel(target, options)
    }

    override fun close() {
        channel.shutdown()
        channel.close()
    }

    suspend fun run(case: String) = when (case) {
        "empty_unary" -> emptyUnary()
        "large_unary" -> largeUnary()
        "client_streaming" -> clientStreaming()
        "server_streaming" -> serverStreaming()
        "ping_pong" -> pingPong()
        "empty_stream" -> emptyStream()
        "timeout_on_sleeping_server" -> timeoutOnSleepingServer()
        "cancel_after_begin" -> cancelAfterBegin()
        "cancel_after_first_response" -> cancelAfterFirstResponse()
        "status_code_and_message" -> echoStatus(2, "test status message", bidi = true)
        "special_status_message" ->
            echoStatus(2, "\t\ntest with whitespace\r\nand Unicode BMP \u263A and non-BMP \uD83D\uDE08\t\n", bidi = false)
        "custom_metadata" -> customMetadata()
        "unimplemented_method" -> unimplemented(UNIMPLEMENTED_CALL)
        "unimplemented_service" -> unimplemented(UNIMPLEMENTED_SERVICE_CALL)
        "rpc_soak" -> soak(newChannelEach = false)
        "channel_soak" -> soak(newChannelEach = true)
        else -> throw IllegalArgumentException("unsupported test case \"$case\"; supported: ${CASES.joinToString(" ")}")
    }

    private suspend fun emptyUnary() {
        val r = step("EmptyCall") { channel.unary(EMPTY_CALL, ByteArray(0), CallOptions()) }
        ensure(r.message.isEmpty()) { "EmptyCall: got a ${r.message.size}-byte response, want an empty message" }
    }

    private suspend fun largeUnary() {
        val r = step("UnaryCall") { channel.unary(UNARY_CALL, Pb.simpleRequest(LARGE_RESP, LARGE_REQ), CallOptions()) }
        check(r.message, LARGE_RESP, "UnaryCall")
    }

    private suspend fun clientStreaming() {
        val call = step("starting StreamingInputCall") { channel.startCall(STREAMING_INPUT_CALL, CallOptions()) }
        for (size in REQ_SIZES) step("send $size") { call.send(Pb.streamingInputRequest(size)) }
        step("closeSend") { call.closeSend() }
        val resp = step("StreamingInputCall") { call.receive() } ?: throw Failure("StreamingInputCall ended without a response")
        val got = Pb.aggregatedPayloadSize(resp)
        ensure(got == REQ_SIZES.sum().toLong()) { "aggregated_payload_size $got want ${REQ_SIZES.sum()}" }
        ensure(step("end of StreamingInputCall") { call.receive() } == null) { "more than one response" }
    }

    private suspend fun serverStreaming() {
        val call = step("starting StreamingOutputCall") { channel.startCall(STREAMING_OUTPUT_CALL, CallOptions()) }
        step("send") { call.send(Pb.streamingOutputRequest(RESP_SIZES)) }
        step("closeSend") { call.closeSend() }
        var n = 0
        while (true) {
            val m = step("StreamingOutputCall") { call.receive() } ?: break
            ensure(n < RESP_SIZES.size) { "more than ${RESP_SIZES.size} responses" }
            check(m, RESP_SIZES[n], "response $n")
            n++
        }
        ensure(n == RESP_SIZES.size) { "got $n responses, want ${RESP_SIZES.size}" }
        val st = call.finish()
        ensure(st.code == StatusCode.OK) { "final status ${st.code}, want OK" }
    }

    private suspend fun pingPong() {
        val call = step("starting FullDuplexCall") { channel.startCall(FULL_DUPLEX_CALL, CallOptions()) }
        for (i in REQ_SIZES.indices) {
            step("send $i") { call.send(Pb.streamingOutputRequest(listOf(RESP_SIZES[i]), requestSize = REQ_SIZES[i])) }
            val m = step("receive $i") { call.receive() } ?: throw Failure("no response $i")
            check(m, RESP_SIZES[i], "response $i")
        }
        step("closeSend") { call.closeSend() }
        ensure(step("end of FullDuplexCall") { call.receive() } == null) { "a response after the last one" }
    }

    private suspend fun emptyStream() {
        val call = step("starting FullDuplexCall") { channel.startCall(FULL_DUPLEX_CALL, CallOptions()) }
        step("closeSend") { call.closeSend() }
        ensure(step("FullDuplexCall") { call.receive() } == null) { "got a response, want none" }
        val st = call.finish()
        ensure(st.code == StatusCode.OK) { "final status ${st.code}, want OK" }
    }

    private suspend fun timeoutOnSleepingServer() {
        // Connect first, so the 1 ms deadline is spent on the call, not on the handshake.
        runCatching { channel.ready(10_000u) }
        val call = try {
            channel.startCall(FULL_DUPLEX_CALL, CallOptions(timeoutMs = 1u))
        } catch (e: GrpcException.Status) {
            ensure(e.code == StatusCode.DEADLINE_EXCEEDED) { "starting FullDuplexCall: want DEADLINE_EXCEEDED, got ${e.describe()}" }
            return
        }
        try {
            call.send(Pb.streamingOutputRequest(emptyList(), requestSize = 27182))
        } catch (e: GrpcException.Status) {
            ensure(e.code == StatusCode.DEADLINE_EXCEEDED) { "send: want DEADLINE_EXCEEDED, got ${e.describe()}" }
        }
        val st = expectStatus("FullDuplexCall") { call.receive() }
        ensure(st.code == StatusCode.DEADLINE_EXCEEDED) { "want DEADLINE_EXCEEDED, got ${st.describe()}" }
    }

    private suspend fun cancelAfterBegin() {
        val call = step("starting StreamingInputCall") { channel.startCall(STREAMING_INPUT_CALL, CallOptions()) }
        call.cancel()
        val st = call.finish()
        ensure(st.code == StatusCode.CANCELLED) { "want CANCELLED, got ${st.code} \"${st.message}\"" }
        val e = expectStatus("send after cancel") { call.send(Pb.streamingInputRequest(8)) }
        ensure(e.code == StatusCode.CANCELLED) { "send after cancel: want CANCELLED, got ${e.describe()}" }
    }

    private suspend fun cancelAfterFirstResponse() {
        val call = step("starting FullDuplexCall") { channel.startCall(FULL_DUPLEX_CALL, CallOptions()) }
        step("send") { call.send(Pb.streamingOutputRequest(listOf(31415), requestSize = 27182)) }
        val m = step("receive") { call.receive() } ?: throw Failure("no response")
        check(m, 31415, "response")
        call.cancel()
        val st = expectStatus("receive after cancel") { call.receive() }
        ensure(st.code == StatusCode.CANCELLED) { "after cancel: want CANCELLED, got ${st.describe()}" }
    }

    private suspend fun echoStatus(code: Int, message: String, bidi: Boolean) {
        fun checkStatus(what: String, gotCode: StatusCode, gotMessage: String) =
            ensure(gotCode.ordinal == code && gotMessage == message) {
                "$what: want code $code message \"$message\", got ${gotCode.ordinal} \"$gotMessage\""
            }
        val st = expectStatus("UnaryCall") {
            channel.unary(UNARY_CALL, Pb.simpleRequest(0, status = code to message), CallOptions())
        }
        checkStatus("UnaryCall", st.code, st.statusMessage)
        if (!bidi) return
        val call = step("starting FullDuplexCall") { channel.startCall(FULL_DUPLEX_CALL, CallOptions()) }
        // A send may already see the status; then that is the answer.
        val failed = try {
            call.send(Pb.streamingOutputRequest(emptyList(), status = code to message))
            call.closeSend()
            null
        } catch (e: GrpcException.Status) {
            e
        }
        if (failed != null) {
            checkStatus("FullDuplexCall", failed.code, failed.statusMessage)
        } else {
            val fin = call.finish()
            checkStatus("FullDuplexCall", fin.code, fin.message)
        }
    }

    private suspend fun customMetadata() {
        val initialValue = "test_initial_metadata_value"
        val trailingValue = byteArrayOf(0xab.toByte(), 0xab.toByte(), 0xab.toByte())
        val opts = CallOptions(
            metadata = listOf(
                MetadataEntry(ECHO_INITIAL_KEY, MetadataValue.Ascii(initialValue)),
                MetadataEntry(ECHO_TRAILING_KEY, MetadataValue.Binary(trailingValue)),
            ),
        )
        fun checkMd(what: String, initial: List<MetadataEntry>, trailing: List<MetadataEntry>) {
            val i = initial.filter { it.key == ECHO_INITIAL_KEY }.map { it.value }
            ensure(i == listOf(MetadataValue.Ascii(initialValue))) { "$what: initial metadata $ECHO_INITIAL_KEY = $i, want [$initialValue]" }
            val t = trailing.filter { it.key == ECHO_TRAILING_KEY }.map { (it.value as? MetadataValue.Binary)?.value?.toList() }
            ensure(t == listOf(trailingValue.toList())) { "$what: trailing metadata $ECHO_TRAILING_KEY = $t, want [${trailingValue.toList()}]" }
        }

        val r = step("UnaryCall") { channel.unary(UNARY_CALL, Pb.simpleRequest(LARGE_RESP, LARGE_REQ), opts) }
        check(r.message, LARGE_RESP, "UnaryCall")
        checkMd("UnaryCall", r.initialMetadata, r.trailingMetadata)

        val call = step("starting FullDuplexCall") { channel.startCall(FULL_DUPLEX_CALL, opts) }
        step("send") { call.send(Pb.streamingOutputRequest(listOf(LARGE_RESP), requestSize = LARGE_REQ)) }
        val initial = step("FullDuplexCall headers") { call.initialMetadata() }
        val m = step("receive") { call.receive() } ?: throw Failure("no response")
        check(m, LARGE_RESP, "FullDuplexCall")
        step("closeSend") { call.closeSend() }
        ensure(step("end of FullDuplexCall") { call.receive() } == null) { "a response after the last one" }
        val st = call.finish()
        ensure(st.code == StatusCode.OK) { "FullDuplexCall: final status ${st.code}, want OK" }
        checkMd("FullDuplexCall", initial, st.trailers)
    }

    private suspend fun unimplemented(method: String) {
        val st = expectStatus(method) { channel.unary(method, ByteArray(0), CallOptions()) }
        ensure(st.code == StatusCode.UNIMPLEMENTED) { "$method: want UNIMPLEMENTED, got ${st.describe()}" }
    }

    /** rpc_soak (one channel) and channel_soak (a new channel per RPC), as grpc-go runs them. */
    private suspend fun soak(newChannelEach: Boolean) {
        val iterations = flags.int("soak_iterations", 10)
        val maxFailures = flags.int("soak_max_failures", 0)
        val maxLatencyMs = flags.int("soak_per_iteration_max_acceptable_latency_ms", 1000).toLong()
        val overallMs = flags.int("soak_overall_timeout_seconds", 10) * 1000L
        val minBetweenMs = flags.int("soak_min_time_ms_between_rpcs", 0).toLong()
        val reqSize = flags.int("soak_request_size", LARGE_REQ)
        val respSize = flags.int("soak_response_size", LARGE_RESP)
        val threads = flags.int("soak_num_threads", 1).coerceAtLeast(1)
        require(iterations >= 0 && iterations % threads == 0) { "soak_iterations must be divisible by soak_num_threads" }
        val start = System.nanoTime()
        fun elapsedMs() = (System.nanoTime() - start) / 1_000_000
        val req = Pb.simpleRequest(respSize, reqSize)
        val results = withContext(Dispatchers.Default) {
            (0 until threads).map { worker ->
                async {
                    var ok = 0
                    var failed = 0
                    for (i in 0 until iterations / threads) {
                        if (elapsedMs() >= overallMs) {
                            System.err.println("Test exceeded overall timeout of ${overallMs}ms, stopping...")
                            break
                        }
                        val earliestNext = System.nanoTime() + minBetweenMs * 1_000_000
                        val t0 = System.nanoTime()
                        var ch: Channel? = null
                        val problem = try {
                            ch = if (newChannelEach) Channel(target, options) else channel
                            val remaining = (overallMs - elapsedMs()).coerceAtLeast(1)
                            val r = ch.unary(UNARY_CALL, req, CallOptions(timeoutMs = remaining.toULong()))
                            Pb.payloadProblem(r.message, respSize)
                        } catch (e: GrpcException) {
                            "/TestService/UnaryCall RPC failed: ${e.describe()}"
                        } finally {
                            if (newChannelEach && ch != null) {
                                ch.shutdown()
                                ch.close()
                            }
                        }
                        val latencyMs = (System.nanoTime() - t0) / 1_000_000
                        val line = "Worker $worker: soak iteration: $i elapsed_ms: $latencyMs server_uri: $target"
                        when {
                            problem != null -> { System.err.println("$line failed: $problem"); failed++ }
                            latencyMs > maxLatencyMs -> {
                                System.err.println("$line exceeds max acceptable latency: $maxLatencyMs")
                                failed++
                            }
                            else -> { System.err.println("$line succeeded"); ok++ }
                        }
                        val wait = (earliestNext - System.nanoTime()) / 1_000_000
                        if (wait > 0) delay(wait)
                    }
                    ok to failed
                }
            }.awaitAll()
        }
        val ok = results.sumOf { it.first }
        val failed = results.sumOf { it.second }
        System.err.println("(server_uri: $target) soak test successes: $ok / $iterations iterations. Total failures: $failed.")
        ensure(ok + failed == iterations) {
            "soak test consumed all ${overallMs}ms of time and quit early, ran ${ok + failed} out of $iterations iterations"
        }
        ensure(failed <= maxFailures) { "soak test total failures: $failed exceeded max failures threshold: $maxFailures" }
    }
}

fun main(args: Array<String>) {
    val flags = try {
        parseFlags(args)
    } catch (e: IllegalArgumentException) {
        System.err.println("interop client: ${e.message}")
        exitProcess(2)
    }
    for (name in flags.keys - KNOWN_FLAGS) System.err.println("interop client: ignoring unsupported flag --$name")
    val case = flags["test_case"] ?: "large_unary"
    val code = try {
        InteropClient(flags).use { client -> runBlocking { withTimeout(45_000) { client.run(case) } } }
        println("PASS $case")
        0
    } catch (e: Failure) {
        System.err.println("FAIL $case: ${e.message}")
        1
    } catch (e: Exception) {
        // Bad flags, an API error, the overall timeout: still a failure, with its cause.
        System.err.println("FAIL $case: $e")
        1
    }
    exitProcess(code)
}
