// A small RAII layer over include/grpc_core.h for C++17: owning handles
// that free themselves, events that release their outputs, and errors as
// exceptions. Header-only; link with libgrpc_core.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpc_core.h"

namespace grpc_core {

// A failed library call: the result code and grpc_core_last_error().
class Error : public std::runtime_error {
 public:
  Error(grpc_core_result code, const char* what)
      : std::runtime_error(std::string(grpc_core_result_name(code)) + ": " + grpc_core_last_error() + " (in " +
                           what + ")"),
        code_(code) {}
  grpc_core_result code() const { return code_; }

 private:
  grpc_core_result code_;
};

inline void check(grpc_core_result r, const char* what) {
  if (r != GRPC_CORE_OK) throw Error(r, what);
}

// An owning handle: calls Free on destruction, movable, not copyable.
template <typename T, grpc_core_result (*Free)(T*)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T* p) : p_(p) {}
  Handle(Handle&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  T* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  void reset() {
    if (p_) Free(std::exchange(p_, nullptr));
  }

 private:
  T* p_ = nullptr;
};

// One completion; frees its outputs (message, metadata, status, call) unless taken.
class Event {
 public:
  Event() : ev_{} {}
  Event(Event&& o) noexcept : ev_(o.ev_) { o.ev_ = grpc_core_event{}; }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { grpc_core_event_release(&ev_); }
  grpc_core_event* raw() { return &ev_; }
  void* tag() const { return ev_.tag; }
  bool success() const { return ev_.success != 0; }
  bool has_message() const { return ev_.message != nullptr; }
  std::string_view message() const {
    return {reinterpret_cast<const char*>(ev_.message_data), ev_.message_len};
  }
  int status_code() const {
    int code = -1;
    if (ev_.status) check(grpc_core_status_code(ev_.status, &code), "status_code");
    return code;
  }
  std::string status_message() const {
    const char* m = nullptr;
    size_t n = 0;
    if (ev_.status) check(grpc_core_status_message(ev_.status, &m, &n), "status_message");
    return std::string(m ? m : "", n);
  }

 private:
  grpc_core_event ev_;
};

class CompletionQueue {
 public:
  CompletionQueue() {
    grpc_core_cq* cq = nullptr;
    check(grpc_core_cq_new(&cq), "cq_new");
    cq_ = Handle<grpc_core_cq, grpc_core_cq_free>(cq);
  }
  ~CompletionQueue() {
    // Shut down and drain, so every pending event's outputs are freed.
    if (!cq_) return;
    grpc_core_cq_shutdown(cq_.get());
    for (;;) {
      Event ev;  // released at the end of each iteration
      if (grpc_core_cq_next(cq_.get(), 1000, ev.raw()) != GRPC_CORE_OK) break;
    }
  }
  CompletionQueue(CompletionQueue&&) = default;
  grpc_core_cq* get() const { return cq_.get(); }

  // The next event; throws on timeout or shutdown.
  Event next(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) {
    Event ev;
    check(grpc_core_cq_next(cq_.get(), timeout.count(), ev.raw()), "cq_next");
    return ev;
  }

 private:
  Handle<grpc_core_cq, grpc_core_cq_free> cq_;
};

struct ChannelOptions {
  std::string tls_roots_pem;  // empty: plaintext
  std::string server_name_override;
  std::chrono::milliseconds connect_timeout{20000};
};

class Channel {
 public:
  explicit Channel(std::string_view target, const ChannelOptions& o = {}) {
    grpc_core_channel_options* raw_opts = nullptr;
    check(grpc_core_channel_options_new(&raw_opts), "channel_options_new");
    Handle<grpc_core_channel_options, grpc_core_channel_options_free> opts(raw_opts);
    check(grpc_core_channel_options_set_connect_timeout(opts.get(), o.connect_timeout.count()), "connect_timeout");
    if (!o.tls_roots_pem.empty())
      check(grpc_core_channel_options_set_tls(opts.get(), reinterpret_cast<const uint8_t*>(o.tls_roots_pem.data()),
                                              o.tls_roots_pem.size()),
            "set_tls");
    if (!o.server_name_override.empty())
      check(grpc_core_channel_options_set_server_name_override(opts.get(), o.server_name_override.data(),
                                                               o.server_name_override.size()),
            "set_server_name_override");
    grpc_core_channel* ch = nullptr;
    check(grpc_core_channel_new(target.data(), target.size(), opts.get(), &ch), "channel_new");
    ch_ = Handle<grpc_core_channel, grpc_core_channel_free>(ch);
  }
  grpc_core_channel* get() const { return ch_.get(); }

 private:
  Handle<grpc_core_channel, grpc_core_channel_free> ch_;
};

struct Metadata {
  std::vector<std::pair<std::string, std::string>> entries;
};

struct Response {
  int code = -1;
  std::string message;  // the status message
  std::string body;     // the response message (unary)
};

// A client call driven synchronously on its own completion queue: each
// operation is started and then waited for. The call is cancelled and freed
// when the object goes away.
class Call {
 public:
  Call(const Channel& ch, std::string_view method, std::chrono::milliseconds timeout, const Metadata& md = {}) {
    std::vector<grpc_core_metadata_entry> entries;
    for (const auto& [k, v] : md.entries)
      entries.push_back({k.data(), k.size(), reinterpret_cast<const uint8_t*>(v.data()), v.size()});
    grpc_core_call* c = nullptr;
    check(grpc_core_call_new(ch.get(), method.data(), method.size(), entries.data(), entries.size(), timeout.count(),
                             0, GRPC_CORE_COMPRESSION_DEFAULT, cq_.get(), &c),
          "call_new");
    call_ = Handle<grpc_core_call, grpc_core_call_free>(c);
  }

  bool send(std::string_view msg, bool last = false) {
    check(grpc_core_call_send_message(call_.get(), reinterpret_cast<const uint8_t*>(msg.data()), msg.size(),
                                      last ? GRPC_CORE_SEND_LAST : 0, tag()),
          "send_message");
    return cq_.next().success();
  }

  // The next response, or false at the end of the stream.
  bool recv(std::string* out) {
    check(grpc_core_call_recv_message(call_.get(), tag()), "recv_message");
    Event ev = cq_.next();
    if (!ev.has_message()) return false;
    out->assign(ev.message());
    return true;
  }

  Response finish() {
    Response r;
    check(grpc_core_call_recv_status(call_.get(), tag()), "recv_status");
    Event ev = cq_.next();
    r.code = ev.status_code();
    r.message = ev.status_message();
    return r;
  }

  // Thread-safe.
  void cancel() { check(grpc_core_call_cancel(call_.get()), "cancel"); }

  // One request, one response.
  static Response unary(const Channel& ch, std::string_view method, std::string_view request,
                        std::chrono::milliseconds timeout, const Metadata& md = {}) {
    Call call(ch, method, timeout, md);
    call.send(request, /*last=*/true);
    std::string body;
    bool got = call.recv(&body);
    Response r = call.finish();
    if (got) r.body = std::move(body);
    return r;
  }

 private:
  void* tag() { return this; }
  CompletionQueue cq_;  // declared first: destroyed after the call
  Handle<grpc_core_call, grpc_core_call_free> call_;
};

inline std::string version() { return grpc_core_version(); }

}  // namespace grpc_core
