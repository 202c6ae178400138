package io.grpccore

import java.io.File
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.TimeUnit

/**
 * An interop server (grpc.testing.TestService) on a free port: our Rust `interop-server` or
 * grpc-java's `TestServiceServer`. The process starts in the constructor; [awaitListening] waits
 * until it accepts connections. Always stopped by [close] (and a shutdown hook).
 */
class InteropServer(val kind: Kind, val tls: Boolean) : AutoCloseable {
    enum class Kind { RUST, JAVA }

    val port: Int = ServerSocket(0).use { it.localPort }
    val certs = File(System.getProperty("interop.certs") ?: error("interop.certs not set"))
    private val process: Process
    private val hook = Thread { stop() }

    init {
        val cmd = when (kind) {
            Kind.RUST -> listOf(
                System.getProperty("interop.server") ?: error("interop.server not set"),
                "--port=$port", "--use_tls=$tls", "--host=127.0.0.1",
            )
            // grpc-java's server has no host flag: it listens on the wildcard address (we only
            // connect to 127.0.0.1). With TLS it uses the server1.pem embedded in its jar, the
            // same certificate as certs/server1.pem.
            Kind.JAVA -> listOf(
                File(System.getProperty("java.home"), "bin/java").path,
                "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-cp", System.getProperty("interop.java.cp") ?: error("interop.java.cp not set"),
                "io.grpc.testing.integration.TestServiceServer", "--port=$port", "--use_tls=$tls",
            )
        }
        val pb = ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD)
        pb.environment()["GRPC_INTEROP_CERTS_DIR"] = certs.path
        process = pb.start()
        Runtime.getRuntime().addShutdownHook(hook)
    }

    /** Waits (at most 60 s: a JVM on a busy machine is slow) until the server accepts connections. */
    fun awaitListening(): InteropServer {
        val until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60)
        while (true) {
            check(process.isAlive) { "$this exited with ${process.exitValue()}" }
            try {
                Socket().use { it.connect(InetSocketAddress("127.0.0.1", port), 200) }
                return this
            } catch (e: Exception) {
                check(System.nanoTime() < until) { "$this did not listen on $port" }
                Thread.sleep(50)
            }
        }
    }

    val target get() = "127.0.0.1:$port"

    override fun toString() = "${kind.name.lowercase()} interop server (${if (tls) "tls" else "plaintext"})"

    private fun stop() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly()
    }

    override fun close() {
        stop()
        runCatching { Runtime.getRuntime().removeShutdownHook(hook) }
    }
}
