/* Greeter server in C over libgrpc_core: helloworld.Greeter/SayHello.
 *
 *   greeter_server [ADDRESS] [MAX_CALLS]
 *
 * ADDRESS defaults to 127.0.0.1:0 (a free port); it prints
 * "listening on 127.0.0.1:PORT". It serves MAX_CALLS calls (default: no
 * limit; stop it with Ctrl-C otherwise), then shuts down gracefully.
 *
 * One thread, one completion queue: every call is a little state machine
 * and the tag of each operation is a pointer to the call's state. The
 * messages are protobuf, encoded by hand (field 1, a string) so that the
 * example needs nothing but libc:
 *   message HelloRequest { string name = 1; }
 *   message HelloReply { string message = 1; } */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_core.h"

static int read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *i < n && shift < 64; shift += 7) {
    uint8_t b = p[(*i)++];
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 1;
  }
  return 0;
}

/* Finds field 1 (a string) of a message; returns its length (0 if absent). */
static size_t pb_string_field1(const uint8_t *p, size_t n, const uint8_t **s) {
  size_t i = 0;
  uint64_t key, len;
  while (i < n && read_varint(p, n, &i, &key)) {
    if ((key & 7) == 0) { /* varint: skip */
      if (!read_varint(p, n, &i, &len)) return 0;
      continue;
    }
    if ((key & 7) != 2 || !read_varint(p, n, &i, &len) || len > n - i) return 0;
    if ((key >> 3) == 1) {
      *s = p + i;
      return (size_t)len;
    }
    i += (size_t)len;
  }
  return 0;
}

/* Encodes a message whose field 1 is the string s; returns its length. */
static size_t pb_encode_field1(uint8_t *out, const char *s, size_t n) {
  size_t i = 0;
  out[i++] = 0x0a; /* field 1, length-delimited */
  size_t len = n;
  do {
    out[i++] = (uint8_t)((len & 0x7f) | (len > 0x7f ? 0x80 : 0));
    len >>= 7;
  } while (len);
  memcpy(out + i, s, n);
  return i + n;
}

enum step { REQUESTED, RECEIVED, SENT, FINISHED };

typedef struct call_state {
  enum step step;
  grpc_core_server_call *call;
} call_state;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

#define CHECK(expr)                                                                          \
  do {                                                                                       \
    grpc_core_result r_ = (expr);                                                            \
    if (r_ != GRPC_CORE_OK) {                                                                \
      fprintf(stderr, "%s: %s (%s)\n", #expr, grpc_core_result_name(r_), grpc_core_last_error()); \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:0";
  long max_calls = argc > 2 ? atol(argv[2]) : -1;
  long served = 0;
  grpc_core_server *server = NULL;
  grpc_core_cq *cq = NULL;
  int port = 0;

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  CHECK(grpc_core_cq_new(&cq));
  CHECK(grpc_core_server_new(NULL, &server));
  const char *method = "/helloworld.Greeter/SayHello";
  CHECK(grpc_core_server_register_method(server, method, strlen(method), GRPC_CORE_METHOD_UNARY));
  CHECK(grpc_core_server_bind(server, address, strlen(address), &port));
  CHECK(grpc_core_server_start(server));
  if (strncmp(address, "unix:", 5) == 0)
    printf("listening on %s\n", address);
  else
    printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);

  /* Ask for the first call; the loop asks for the next one each time. */
  call_state *next = (call_state *)calloc(1, sizeof *next);
  CHECK(grpc_core_server_request_call(server, cq, next));
  int shutting_down = 0;
  for (;;) {
    grpc_core_event ev;
    grpc_core_result r = grpc_core_cq_next(cq, 200, &ev);
    if (r == GRPC_CORE_TIMEOUT) {
      if (g_stop && !shutting_down) {
        shutting_down = 1;
        CHECK(grpc_core_server_shutdown(server, 1000, cq, NULL));
      }
      continue;
    }
    if (r != GRPC_CORE_OK) break;
    if (ev.op == GRPC_CORE_OP_SERVER_SHUTDOWN) break;
    call_state *c = (call_state *)ev.tag;
    switch (c->step) {
      case REQUESTED:
        if (!ev.success) { /* the server is shutting down */
          free(c);
          break;
        }
        c->call = ev.call;
        grpc_core_metadata_free(ev.metadata);
        c->step = RECEIVED;
        CHECK(grpc_core_server_call_recv_message(c->call, c));
        if (max_calls < 0 || ++served < max_calls) {
          next = (call_state *)calloc(1, sizeof *next);
          CHECK(grpc_core_server_request_call(server, cq, next));
        } else {
          g_stop = 1;
        }
        break;
      case RECEIVED: {
        const uint8_t *name = NULL;
        size_t n = ev.message ? pb_string_field1(ev.message_data, ev.message_len, &name) : 0;
        char text[300];
        int len = snprintf(text, sizeof text, "Hello %.*s", (int)(n > 256 ? 256 : n), name ? (const char *)name : "");
        uint8_t reply[310];
        size_t rlen = pb_encode_field1(reply, text, (size_t)len);
        const char *peer = NULL;
        size_t plen = 0;
        grpc_core_server_call_peer(c->call, &peer, &plen);
        printf("server: SayHello(name=\"%.*s\") from %.*s\n", (int)n, name ? (const char *)name : "", (int)plen,
               peer);
        fflush(stdout);
        if (ev.message) grpc_core_buffer_free(ev.message);
        c->step = SENT;
        CHECK(grpc_core_server_call_send_message(c->call, reply, rlen, 0, c));
        break;
      }
      case SENT:
        c->step = FINISHED;
        CHECK(grpc_core_server_call_finish(c->call, ev.success ? 0 : 13, NULL, 0, NULL, 0, NULL, 0, c));
        break;
      case FINISHED:
        grpc_core_server_call_free(c->call);
        free(c);
        if (g_stop && !shutting_down) {
          shutting_down = 1;
          CHECK(grpc_core_server_shutdown(server, 1000, cq, NULL));
        }
        break;
    }
  }
  grpc_core_server_free(server);
  grpc_core_cq_shutdown(cq);
  grpc_core_event ev;
  while (grpc_core_cq_next(cq, 1000, &ev) == GRPC_CORE_OK) {
    if (ev.op == GRPC_CORE_OP_SERVER_REQUEST_CALL) free(ev.tag);
    grpc_core_event_release(&ev);
  }
  grpc_core_cq_free(cq);
  printf("server: served %ld call(s), bye\n", served);
  return 0;
}
