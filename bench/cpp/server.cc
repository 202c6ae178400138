// The gRPC C++ peer: the benchmark service on the callback API, with
// gRPC's defaults and the message limits raised to 64 MiB.
//
//   cpp-server [--port 0] [--tls-cert F --tls-key F]; prints "PORT <n>".
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "echo.grpc.pb.h"
#include "helloworld.grpc.pb.h"

namespace {

constexpr int kMaxMessage = 64 << 20;

class GreeterImpl final : public helloworld::Greeter::CallbackService {
  grpc::ServerUnaryReactor* SayHello(grpc::CallbackServerContext* ctx, const helloworld::HelloRequest* req,
                                     helloworld::HelloReply* reply) override {
    reply->set_message("Hello, " + req->name() + "!");
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Reads a message, writes its echo, reads the next: one response per request.
class EchoReactor final : public grpc::ServerBidiReactor<bench::Payload, bench::Payload> {
 public:
  EchoReactor() { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    out_.set_data(in_.data());
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartRead(&in_);
  }
  void OnDone() override { delete this; }

 private:
  bench::Payload in_, out_;
};

class EchoImpl final : public bench::Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const bench::Payload* req,
                                  bench::Payload* reply) override {
    reply->set_data(req->data());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<bench::Payload, bench::Payload>* Stream(grpc::CallbackServerContext*) override {
    return new EchoReactor();
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string cert, key;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tls-cert")) cert = argv[i + 1];
    else if (!std::strcmp(argv[i], "--tls-key")) key = argv[i + 1];
  }
  // Block the stop signals before gRPC starts its threads; main waits for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!cert.empty()) {
    grpc::SslServerCredentialsOptions opts;
    opts.pem_key_cert_pairs.push_back({ReadFile(key), ReadFile(cert)});
    creds = grpc::SslServerCredentials(opts);
  }
  GreeterImpl greeter;
  EchoImpl echo;
  grpc::ServerBuilder builder;
  int selected = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), creds, &selected);
  builder.SetMaxReceiveMessageSize(kMaxMessage);
  builder.SetMaxSendMessageSize(kMaxMessage);
  builder.RegisterService(&greeter);
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected == 0) {
    std::fprintf(stderr, "failed to start the server\n");
    return 1;
  }
  std::printf("PORT %d\n", selected);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  return 0;
}
