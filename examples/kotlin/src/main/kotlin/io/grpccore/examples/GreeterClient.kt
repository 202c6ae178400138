// Calls helloworld.Greeter/SayHello on any greeter server with grpc-core's Kotlin binding.
// Usage: java -Djna.library.path=<dir of libgrpc_core_uniffi.so> -jar target/greeter-kotlin.jar TARGET [NAME]
// The request and reply are protobuf messages with one string (field 1), encoded by hand so the
// example needs no generated protobuf code; an app would use protobuf-kotlin(-lite) instead.
// Prints the greeting; any failure is printed to stderr and exits 1.
package io.grpccore.examples

import io.grpccore.CallOptions
import io.grpccore.Channel
import io.grpccore.ChannelOptions
import io.grpccore.GrpcException
import io.grpccore.MetadataEntry
import io.grpccore.MetadataValue
import kotlinx.coroutines.runBlocking
import java.io.ByteArrayOutputStream
import kotlin.system.exitProcess

/** helloworld.HelloRequest { string name = 1; } */
fun helloRequest(name: String): ByteArray {
    val bytes = name.toByteArray()
    val out = ByteArrayOutputStream()
    out.write(0x0a)
    var n = bytes.size
    while (n >= 0x80) {
        out.write((n and 0x7f) or 0x80)
        n = n ushr 7
    }
    out.write(n)
    out.write(bytes)
    return out.toByteArray()
}

/** helloworld.HelloReply { string message = 1; }: the message, or null if the bytes are not that. */
fun helloReply(reply: ByteArray): String? {
    if (reply.isEmpty() || reply[0] != 0x0a.toByte()) return null
    var i = 1
    var len = 0
    var shift = 0
    while (i < reply.size && shift < 35) {
        val b = reply[i++].toInt() and 0xff
        len = len or ((b and 0x7f) shl shift)
        if (b < 0x80) return if (i + len <= reply.size) String(reply, i, len) else null
        shift += 7
    }
    return null
}

fun main(args: Array<String>) {
    val target = args.getOrNull(0) ?: "127.0.0.1:50051"
    val name = args.getOrNull(1) ?: "kotlin"
    val channel = Channel(target, ChannelOptions())
    val status = try {
        val reply = runBlocking {
            channel.unary(
                "/helloworld.Greeter/SayHello",
                helloRequest(name),
                CallOptions(timeoutMs = 10_000u, metadata = listOf(MetadataEntry("x-client", MetadataValue.Ascii("kotlin")))),
            )
        }
        val message = helloReply(reply.message)
        if (message.isNullOrEmpty()) {
            System.err.println("kotlin client: SayHello returned no greeting (${reply.message.size} bytes)")
            1
        } else {
            println("kotlin client: SayHello -> \"$message\"")
            0
        }
    } catch (e: GrpcException.Status) {
        System.err.println("kotlin client: SayHello failed: ${e.code} ${e.statusMessage}")
        1
    } catch (e: GrpcException.Api) {
        System.err.println("kotlin client: SayHello failed: ${e.reason}")
        1
    } finally {
        channel.shutdown()
        channel.close()
    }
    exitProcess(status)
}
