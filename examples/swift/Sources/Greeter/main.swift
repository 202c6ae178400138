import Foundation
import GrpcCore

// helloworld.HelloRequest { string name = 1; } encoded by hand.
func helloRequest(_ name: String) -> Data {
    let n = Array(name.utf8)
    return Data([0x0a, UInt8(n.count)] + n)
}

let target = CommandLine.arguments.dropFirst().first ?? "127.0.0.1:50051"
let channel = try Channel(target: target, options: ChannelOptions())
do {
    let reply = try await channel.unary(method: "/helloworld.Greeter/SayHello",
                                        request: helloRequest("Swift"),
                                        options: CallOptions(timeoutMs: 5000))
    // HelloReply { string message = 1; }
    print(String(decoding: reply.message.dropFirst(2), as: UTF8.self))
} catch let GrpcError.Status(code, message, _, _, _) {
    print("RPC failed: \(code) \(message)")
}
channel.shutdown()
