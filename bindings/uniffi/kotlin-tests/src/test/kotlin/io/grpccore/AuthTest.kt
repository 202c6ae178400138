package io.grpccore

import io.grpccore.interop.Pb
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import java.io.File
import java.util.concurrent.CopyOnWriteArrayList

private const val SVC = "/grpc.testing.TestService"
private const val ECHO = "x-grpc-test-echo-initial"

/** Call credentials from Kotlin: a suspend provider, access tokens, per-call and channel-wide, TLS only. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AuthTest {
    private lateinit var plain: InteropServer
    private lateinit var secure: InteropServer
    private lateinit var ca: String

    @BeforeAll
    fun start() {
        plain = InteropServer(InteropServer.Kind.RUST, tls = false)
        secure = InteropServer(InteropServer.Kind.RUST, tls = true)
        plain.awaitListening()
        secure.awaitListening()
        ca = File(secure.certs, "ca.pem").readText()
    }

    @AfterAll
    fun stop() {
        plain.close()
        secure.close()
    }

    /** Puts `x-grpc-test-echo-initial: <prefix>-<method name>` on each call; the server echoes it back. */
    private class EchoProvider(val prefix: String) : CallCredentialsProvider {
        val seen = CopyOnWriteArrayList<AuthContextInfo>()
        override suspend fun metadata(context: AuthContextInfo): List<MetadataEntry> {
            seen.add(context)
            kotlinx.coroutines.delay(1) // really suspends
            return listOf(MetadataEntry(ECHO, MetadataValue.Ascii("$prefix-${context.methodName}")))
        }
    }

    private fun tlsChannel(creds: CallCredentials? = null) = Channel(
        secure.target,
        ChannelOptions(tls = TlsOptions(rootCertsPem = ca, serverNameOverride = "foo.test.google.fr"), callCredentials = creds),
    )

    private fun echoed(r: UnaryResponse): String? =
        (r.initialMetadata.firstOrNull { it.key == ECHO }?.value as MetadataValue.Ascii?)?.value

    private fun statusOf(e: Throwable): GrpcException.Status = e as? GrpcException.Status ?: error("not a status: $e")

    @Test
    fun channelCredentialsReachTheServerOverTls() = runBlocking {
        val p = EchoProvider("token")
        val ch = tlsChannel(CallCredentials.fromProvider(p))
        try {
            val r = ch.unary("$SVC/UnaryCall", Pb.simpleRequest(10), CallOptions())
            assertEquals("token-UnaryCall", echoed(r))
            val ctx = p.seen.single()
            assertEquals("$SVC/UnaryCall", ctx.method)
            assertEquals("UnaryCall", ctx.methodName)
            assertEquals("foo.test.google.fr", ctx.authority)
            assertEquals("https://foo.test.google.fr/grpc.testing.TestService", ctx.serviceUrl)
            // Streaming calls get them too.
            val call = ch.startCall("$SVC/FullDuplexCall", CallOptions())
            assertTrue(call.initialMetadata().any { it.key == ECHO && (it.value as MetadataValue.Ascii).value == "token-FullDuplexCall" })
            call.cancel()
        } finally {
            ch.shutdown(); ch.close()
        }
    }

    @Test
    fun perCallAndComposedCredentials() = runBlocking {
        val ch = tlsChannel()
        try {
            val r = ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions(credentials = CallCredentials.fromProvider(EchoProvider("call"))))
            assertEquals("call-UnaryCall", echoed(r))
            // An access token (authorization: Bearer ...) composed with the echoing provider.
            val both = CallCredentials.accessToken("secret").compose(CallCredentials.fromProvider(EchoProvider("composed")))
            val r2 = ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions(credentials = both))
            assertEquals("composed-UnaryCall", echoed(r2))
            // No credentials: nothing echoed.
            assertEquals(null, echoed(ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions())))
        } finally {
            ch.shutdown(); ch.close()
        }
    }

    @Test
    fun refusedOnPlaintextUnlessAllowed() = runBlocking {
        val p = EchoProvider("token")
        val ch = Channel(plain.target, ChannelOptions(callCredentials = CallCredentials.fromProvider(p)))
        val e = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions()) } }
        assertEquals(StatusCode.UNAUTHENTICATED, statusOf(e).code)
        val e2 = assertThrows<GrpcException> {
            runBlocking { ch.unary("$SVC/EmptyCall", ByteArray(0), CallOptions(credentials = CallCredentials.accessToken("t"))) }
        }
        assertEquals(StatusCode.UNAUTHENTICATED, statusOf(e2).code)
        assertTrue(p.seen.isEmpty(), "the provider is not even asked")
        ch.shutdown(); ch.close()

        val allowed = Channel(plain.target, ChannelOptions(callCredentials = CallCredentials.fromProvider(p), allowInsecureCallCredentials = true))
        assertEquals("token-UnaryCall", echoed(allowed.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions())))
        allowed.shutdown(); allowed.close()
    }

    @Test
    fun providerErrorsEndTheCall() = runBlocking {
        val ch = tlsChannel()
        try {
            val denied = CallCredentials.fromProvider(object : CallCredentialsProvider {
                override suspend fun metadata(context: AuthContextInfo): List<MetadataEntry> =
                    throw GrpcException.Status(StatusCode.PERMISSION_DENIED, "no token for ${context.methodName}", ByteArray(0), emptyList(), emptyList())
            })
            val e = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions(credentials = denied)) } }
            assertEquals(StatusCode.PERMISSION_DENIED, statusOf(e).code)
            assertEquals("no token for UnaryCall", statusOf(e).statusMessage)

            // gRFC A54: a code a control plane must not produce becomes INTERNAL.
            val illegal = CallCredentials.fromProvider(object : CallCredentialsProvider {
                override suspend fun metadata(context: AuthContextInfo): List<MetadataEntry> =
                    throw GrpcException.Status(StatusCode.NOT_FOUND, "x", ByteArray(0), emptyList(), emptyList())
            })
            val e2 = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions(credentials = illegal)) } }
            assertEquals(StatusCode.INTERNAL, statusOf(e2).code)

            // Any other exception: UNAVAILABLE.
            val broken = CallCredentials.fromProvider(object : CallCredentialsProvider {
                override suspend fun metadata(context: AuthContextInfo): List<MetadataEntry> = throw IllegalStateException("token service down")
            })
            val e3 = assertThrows<GrpcException> { runBlocking { ch.unary("$SVC/UnaryCall", Pb.simpleRequest(1), CallOptions(credentials = broken)) } }
            assertEquals(StatusCode.UNAVAILABLE, statusOf(e3).code)

            // The channel still works afterwards.
            assertEquals(5, Pb.payloadSize(ch.unary("$SVC/UnaryCall", Pb.simpleRequest(5), CallOptions()).message))
        } finally {
            ch.shutdown(); ch.close()
        }
    }
}
