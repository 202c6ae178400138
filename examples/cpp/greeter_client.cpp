// Greeter client in C++17, using the RAII layer in grpc_core.hpp.
//
//   greeter_client_cpp TARGET [NAME]
//
// HelloRequest/HelloReply are protobuf messages with one string (field 1),
// encoded by hand here so the example needs no protobuf library.
#include <iostream>
#include <string>

#include "grpc_core.hpp"

static std::string encode_field1(const std::string& s) {
  std::string out(1, '\x0a');
  size_t n = s.size();
  do {
    out.push_back(static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
    n >>= 7;
  } while (n);
  return out + s;
}

static std::string decode_field1(const std::string& m) {
  if (m.size() < 2 || m[0] != '\x0a') return {};
  size_t len = 0, i = 1;
  for (int shift = 0; i < m.size(); shift += 7) {
    unsigned char b = static_cast<unsigned char>(m[i++]);
    len |= static_cast<size_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return m.substr(i, len);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " TARGET [NAME]\n";
    return 2;
  }
  std::string name = argc > 2 ? argv[2] : "world";
  try {
    grpc_core::Channel channel(argv[1]);
    grpc_core::Metadata md;
    md.entries.emplace_back("x-client", "cpp-example");
    auto r = grpc_core::Call::unary(channel, "/helloworld.Greeter/SayHello", encode_field1(name),
                                    std::chrono::milliseconds(5000), md);
    if (r.code != 0) {
      std::cerr << "call failed: " << grpc_core_status_code_name(r.code) << ": " << r.message << "\n";
      return 1;
    }
    std::cout << "Greeting (C++): " << decode_field1(r.body) << "\n";
  } catch (const grpc_core::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
