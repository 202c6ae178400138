package io.grpccore

import java.io.File
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.TimeUnit

/** The Rust interop server on a free port; always stopped by [close] (and a shutdown hook). */
class InteropServer(val tls: Boolean) : AutoCloseable {
    val port: Int = ServerSocket(0).use { it.localPort }
    val certs = File(System.getProperty("interop.certs") ?: error("interop.certs not set"))
    private val process: Process
    private val hook = Thread { stop() }

    init {
        val bin = System.getProperty("interop.server") ?: error("interop.server not set")
        val pb = ProcessBuilder(bin, "--port=$port", "--use_tls=$tls", "--host=127.0.0.1")
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
        pb.environment()["GRPC_INTEROP_CERTS_DIR"] = certs.path
        process = pb.start()
        Runtime.getRuntime().addShutdownHook(hook)
        val until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        while (true) {
            check(process.isAlive) { "interop server exited with ${process.exitValue()}" }
            try {
                Socket().use { it.connect(InetSocketAddress("127.0.0.1", port), 200) }
                break
            } catch (e: Exception) {
                check(System.nanoTime() < until) { "interop server did not listen on $port" }
                Thread.sleep(50)
            }
        }
    }

    val target get() = "127.0.0.1:$port"

    private fun stop() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly()
    }

    override fun close() {
        stop()
        runCatching { Runtime.getRuntime().removeShutdownHook(hook) }
    }
}
