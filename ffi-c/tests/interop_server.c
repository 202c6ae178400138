/* grpc.testing.TestService in C over the libgrpc_core ABI: the "Server"
 * section of grpc's interop-test-descriptions.md, for the Rust and grpc-go
 * interop clients.
 *
 * Usage: interop_server --port=N [--use_tls=true|false] [--client_ca=FILE]
 * TLS uses $GRPC_INTEROP_CERTS_DIR/server1.pem and server1.key;
 * --client_ca requires client certificates signed by FILE (mutual TLS).
 * Prints "listening on port N" once serving. SIGINT/SIGTERM shut it down
 * gracefully (2 s grace), after which every object is freed, so that
 * valgrind and LeakSanitizer see a clean exit.
 *
 * Design: the main thread requests calls, each on a fresh completion queue,
 * and hands every call to its own thread, which drives it with blocking
 * helpers (start one operation, wait for its event on the call's queue). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "test_util.h"

#define MAX_MESSAGE (16u << 20)

static grpc_core_server *g_server;
static grpc_core_cq *g_ctl_cq;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_active_calls;

typedef struct {
  grpc_core_server_call *call;
  grpc_core_cq *cq;
  grpc_core_metadata *md;       /* request metadata (owned) */
  grpc_core_metadata_entry echo_initial[1], echo_trailing[1];
  size_t n_initial, n_trailing;
  int headers_sent;
} call_ctx;

/* ------------------------------------------------------ blocking ops ---- */

static int await_op(call_ctx *c, grpc_core_result started, void *tag, grpc_core_event *ev) {
  if (started != GRPC_CORE_OK) {
    fprintf(stderr, "interop_server: starting an op failed: %s: %s\n", grpc_core_result_name(started),
            grpc_core_last_error());
    return 0;
  }
  if (grpc_core_cq_next(c->cq, -1, ev) != GRPC_CORE_OK || ev->tag != tag) {
    fprintf(stderr, "interop_server: unexpected completion\n");
    return 0;
  }
  return 1;
}

/* 1: a message in *ev (free ev->message); 0: the client half-closed; -1: the call is over. */
static int recv_msg(call_ctx *c, grpc_core_event *ev) {
  if (!await_op(c, grpc_core_server_call_recv_message(c->call, TAG(1)), TAG(1), ev)) return -1;
  if (ev->message) return 1;
  return ev->success ? 0 : -1;
}

static int send_msg(call_ctx *c, const pb_buf *m, int compress) {
  grpc_core_event ev;
  uint32_t flags = compress ? 0 : GRPC_CORE_SEND_NO_COMPRESS;
  c->headers_sent = 1;
  return await_op(c, grpc_core_server_call_send_message(c->call, m->data, m->len, flags, TAG(2)), TAG(2), &ev) &&
         ev.success;
}

static int send_echo_initial(call_ctx *c) {
  grpc_core_event ev;
  if (c->headers_sent || c->n_initial == 0) return 1;
  c->headers_sent = 1;
  return await_op(c, grpc_core_server_call_send_initial_metadata(c->call, c->echo_initial, c->n_initial, TAG(3)),
                  TAG(3), &ev) &&
         ev.success;
}

static void finish(call_ctx *c, int code, const char *message) {
  grpc_core_event ev;
  await_op(c,
           grpc_core_server_call_finish(c->call, code, message, message ? strlen(message) : 0, NULL, 0,
                                        c->echo_trailing, c->n_trailing, TAG(4)),
           TAG(4), &ev);
}

static void set_gzip(call_ctx *c) {
  if (grpc_core_server_call_set_compression(c->call, GRPC_CORE_COMPRESSION_GZIP) != GRPC_CORE_OK)
    fprintf(stderr, "interop_server: set_compression: %s\n", grpc_core_last_error());
}

/* ---------------------------------------------------------- messages ---- */

typedef struct {
  int code;
  char message[1024];
} echo_status;

static int bool_value(const pb_field *f) {
  pb_reader r = pb_reader_of(f->data, f->len);
  pb_field g;
  int v = 0;
  while (pb_next(&r, &g) == 1)
    if (g.field == 1) v = g.varint != 0;
  return v;
}

static void parse_echo_status(const pb_field *f, echo_status *s) {
  pb_reader r = pb_reader_of(f->data, f->len);
  pb_field g;
  while (pb_next(&r, &g) == 1) {
    if (g.field == 1) s->code = (int)(int32_t)g.varint;
    if (g.field == 2 && g.wire == 2) {
      size_t n = g.len < sizeof s->message - 1 ? g.len : sizeof s->message - 1;
      memcpy(s->message, g.data, n);
      s->message[n] = 0;
    }
  }
}

typedef struct {
  int response_type;
  long response_size;
  int response_compressed;
  int expect_compressed; /* -1 absent, 0, 1 */
  echo_status status;
} simple_request;

static int parse_simple_request(const uint8_t *p, size_t n, simple_request *q) {
  pb_reader r = pb_reader_of(p, n);
  pb_field f;
  int k;
  memset(q, 0, sizeof *q);
  q->expect_compressed = -1;
  while ((k = pb_next(&r, &f)) == 1) {
    switch (f.field) {
      case 1: q->response_type = (int)f.varint; break;
      case 2: q->response_size = (long)(int32_t)f.varint; break;
      case 6: q->response_compressed = bool_value(&f); break;
      case 7: parse_echo_status(&f, &q->status); break;
      case 8: q->expect_compressed = bool_value(&f); break;
      default: break;
    }
  }
  return k == 0;
}

#define MAX_PARAMS 64
typedef struct {
  int response_type;
  int nparams;
  int size[MAX_PARAMS], interval_us[MAX_PARAMS], compressed[MAX_PARAMS];
  echo_status status;
} streaming_request;

static int parse_streaming_request(const uint8_t *p, size_t n, streaming_request *q) {
  pb_reader r = pb_reader_of(p, n);
  pb_field f;
  int k;
  memset(q, 0, sizeof *q);
  while ((k = pb_next(&r, &f)) == 1) {
    if (f.field == 1) q->response_type = (int)f.varint;
    if (f.field == 7) parse_echo_status(&f, &q->status);
    if (f.field == 2 && f.wire == 2 && q->nparams < MAX_PARAMS) {
      pb_reader pr = pb_reader_of(f.data, f.len);
      pb_field g;
      int i = q->nparams++;
      while (pb_next(&pr, &g) == 1) {
        if (g.field == 1) q->size[i] = (int)(int32_t)g.varint;
        if (g.field == 2) q->interval_us[i] = (int)(int32_t)g.varint;
        if (g.field == 3) q->compressed[i] = bool_value(&g);
      }
    }
  }
  return k == 0;
}

/* A response whose field 1 is a Payload of `size` zeros. */
static void payload_response(pb_buf *b, long size) { pb_payload(b, 1, (size_t)size); }

static int check_compressed(call_ctx *c, int expect, int compressed) {
  if (expect == 1 && !compressed) {
    finish(c, 3, "expected compressed request, got an uncompressed one");
    return 0;
  }
  if (expect == 0 && compressed) {
    finish(c, 3, "expected an uncompressed request, got a compressed one");
    return 0;
  }
  return 1;
}

/* ---------------------------------------------------------- handlers ---- */

static void empty_call(call_ctx *c) {
  grpc_core_event ev;
  pb_buf empty = {0};
  int k = recv_msg(c, &ev);
  if (k == 1) grpc_core_buffer_free(ev.message);
  if (k != 1) { finish(c, 13, "no request message"); return; }
  if (!send_echo_initial(c) || !send_msg(c, &empty, 1)) { finish(c, 1, "send failed"); return; }
  finish(c, 0, NULL);
}

static void unary_call(call_ctx *c) {
  grpc_core_event ev;
  simple_request q;
  int k = recv_msg(c, &ev);
  if (k != 1) { finish(c, 13, "no request message"); return; }
  int ok = parse_simple_request(ev.message_data, ev.message_len, &q);
  int compressed = ev.value;
  grpc_core_buffer_free(ev.message);
  if (!ok) { finish(c, 3, "malformed SimpleRequest"); return; }
  if (!check_compressed(c, q.expect_compressed, compressed)) return;
  if (q.response_compressed) set_gzip(c);
  if (!send_echo_initial(c)) { finish(c, 1, "send failed"); return; }
  if (q.status.code != 0) { finish(c, q.status.code, q.status.message); return; }
  if (q.response_type != 0) { finish(c, 3, "unsupported response payload type"); return; }
  if (q.response_size < 0) { finish(c, 3, "invalid response size"); return; }
  pb_buf resp = {0};
  payload_response(&resp, q.response_size);
  ok = send_msg(c, &resp, q.response_compressed);
  pb_free(&resp);
  if (!ok) { finish(c, 1, "send failed"); return; }
  finish(c, 0, NULL);
}

static void streaming_input_call(call_ctx *c) {
  grpc_core_event ev;
  long sum = 0;
  int k;
  if (!send_echo_initial(c)) { finish(c, 1, "send failed"); return; }
  while ((k = recv_msg(c, &ev)) == 1) {
    pb_reader r = pb_reader_of(ev.message_data, ev.message_len);
    pb_field f;
    int expect = -1, bad = 0;
    long len = 0;
    while ((bad = pb_next(&r, &f)) == 1) {
      if (f.field == 1 && f.wire == 2) len = payload_body_len(f.data, f.len);
      if (f.field == 2) expect = bool_value(&f);
    }
    int compressed = ev.value;
    grpc_core_buffer_free(ev.message);
    if (bad < 0 || len < 0) { finish(c, 3, "malformed StreamingInputCallRequest"); return; }
    if (!check_compressed(c, expect, compressed)) return;
    sum += len;
  }
  if (k < 0) { finish(c, 1, "the call is over"); return; }
  pb_buf resp = {0};
  pb_field_varint(&resp, 1, (uint64_t)sum);
  int ok = send_msg(c, &resp, 1);
  pb_free(&resp);
  if (!ok) { finish(c, 1, "send failed"); return; }
  finish(c, 0, NULL);
}

static int send_responses(call_ctx *c, const streaming_request *q) {
  if (q->response_type != 0) {
    finish(c, 3, "unsupported response payload type");
    return 0;
  }
  for (int i = 0; i < q->nparams; i++) {
    if (q->interval_us[i] > 0) {
      struct timespec ts = {q->interval_us[i] / 1000000, (q->interval_us[i] % 1000000) * 1000L};
      nanosleep(&ts, NULL);
    }
    pb_buf resp = {0};
    payload_response(&resp, q->size[i]);
    int ok = send_msg(c, &resp, q->compressed[i]);
    pb_free(&resp);
    if (!ok) {
      finish(c, 1, "send failed");
      return 0;
    }
  }
  return 1;
}

static void streaming_output_call(call_ctx *c) {
  grpc_core_event ev;
  streaming_request q;
  if (recv_msg(c, &ev) != 1) { finish(c, 13, "no request message"); return; }
  int ok = parse_streaming_request(ev.message_data, ev.message_len, &q);
  grpc_core_buffer_free(ev.message);
  if (!ok) { finish(c, 3, "malformed StreamingOutputCallRequest"); return; }
  for (int i = 0; i < q.nparams; i++)
    if (q.compressed[i]) {
      set_gzip(c);
      break;
    }
  if (!send_echo_initial(c)) { finish(c, 1, "send failed"); return; }
  if (q.status.code != 0) { finish(c, q.status.code, q.status.message); return; }
  if (!send_responses(c, &q)) return;
  finish(c, 0, NULL);
}

/* Before the first response of a bidi call: compress the call's responses
 * if that first response asks for it (headers carry the encoding). */
static void before_first_send(call_ctx *c, const streaming_request *q) {
  if (c->headers_sent || q->nparams == 0) return;
  if (q->compressed[0]) set_gzip(c);
}

static void full_duplex_call(call_ctx *c) {
  grpc_core_event ev;
  streaming_request q;
  int k;
  if (!send_echo_initial(c)) { finish(c, 1, "send failed"); return; }
  while ((k = recv_msg(c, &ev)) == 1) {
    int ok = parse_streaming_request(ev.message_data, ev.message_len, &q);
    grpc_core_buffer_free(ev.message);
    if (!ok) { finish(c, 3, "malformed StreamingOutputCallRequest"); return; }
    if (q.status.code != 0) { finish(c, q.status.code, q.status.message); return; }
    before_first_send(c, &q);
    if (!send_responses(c, &q)) return;
  }
  if (k < 0) { finish(c, 1, "the call is over"); return; }
  finish(c, 0, NULL);
}

static void half_duplex_call(call_ctx *c) {
  grpc_core_event ev;
  streaming_request *reqs = NULL;
  int n = 0, k;
  if (!send_echo_initial(c)) { finish(c, 1, "send failed"); return; }
  while ((k = recv_msg(c, &ev)) == 1) {
    streaming_request *more = (streaming_request *)realloc(reqs, (size_t)(n + 1) * sizeof *reqs);
    if (!more) abort();
    reqs = more;
    int ok = parse_streaming_request(ev.message_data, ev.message_len, &reqs[n]);
    grpc_core_buffer_free(ev.message);
    if (!ok) {
      free(reqs);
      { finish(c, 3, "malformed StreamingOutputCallRequest"); return; }
    }
    n++;
  }
  for (int i = 0; k == 0 && i < n; i++) {
    if (reqs[i].status.code != 0) {
      finish(c, reqs[i].status.code, reqs[i].status.message);
      free(reqs);
      return;
    }
    before_first_send(c, &reqs[i]);
    if (!send_responses(c, &reqs[i])) {
      free(reqs);
      return;
    }
  }
  free(reqs);
  if (k < 0) { finish(c, 1, "the call is over"); return; }
  finish(c, 0, NULL);
}

static int method_is(const char *m, size_t n, const char *name) {
  size_t pre = strlen(TEST_SERVICE);
  return n == pre + strlen(name) && memcmp(m, TEST_SERVICE, pre) == 0 && memcmp(m + pre, name, n - pre) == 0;
}

static void *serve_call(void *arg) {
  call_ctx *c = (call_ctx *)arg;
  const char *m = NULL;
  size_t n = 0;
  const uint8_t *v = NULL;
  long len;
  if ((len = md_find(c->md, "x-grpc-test-echo-initial", &v)) >= 0) {
    c->echo_initial[0] = md_entry("x-grpc-test-echo-initial", v, (size_t)len);
    c->n_initial = 1;
  }
  if ((len = md_find(c->md, "x-grpc-test-echo-trailing-bin", &v)) >= 0) {
    c->echo_trailing[0] = md_entry("x-grpc-test-echo-trailing-bin", v, (size_t)len);
    c->n_trailing = 1;
  }
  grpc_core_server_call_method(c->call, &m, &n);
  if (method_is(m, n, "EmptyCall"))
    empty_call(c);
  else if (method_is(m, n, "UnaryCall"))
    unary_call(c);
  else if (method_is(m, n, "StreamingInputCall"))
    streaming_input_call(c);
  else if (method_is(m, n, "StreamingOutputCall"))
    streaming_output_call(c);
  else if (method_is(m, n, "FullDuplexCall"))
    full_duplex_call(c);
  else if (method_is(m, n, "HalfDuplexCall"))
    half_duplex_call(c);
  else
    finish(c, 12, "not implemented by the C interop server");

  grpc_core_server_call_free(c->call);
  grpc_core_metadata_free(c->md);
  grpc_core_cq_shutdown(c->cq);
  grpc_core_event ev;
  while (grpc_core_cq_next(c->cq, -1, &ev) == GRPC_CORE_OK) grpc_core_event_release(&ev);
  grpc_core_cq_free(c->cq);
  free(c);
  pthread_mutex_lock(&g_mu);
  if (--g_active_calls == 0) pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

/* ------------------------------------------------------------- main ---- */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = (char *)malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void *signal_thread(void *arg) {
  sigset_t *set = (sigset_t *)arg;
  int sig = 0;
  sigwait(set, &sig);
  fprintf(stderr, "interop_server: signal %d, shutting down\n", sig);
  if (grpc_core_server_shutdown(g_server, 2000, g_ctl_cq, TAG(99)) != GRPC_CORE_OK)
    fprintf(stderr, "interop_server: shutdown: %s\n", grpc_core_last_error());
  return NULL;
}

static const char *flag(int argc, char **argv, const char *name) {
  size_t n = strlen(name);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    while (*a == '-') a++;
    if (strncmp(a, name, n) == 0 && a[n] == '=') return a + n + 1;
  }
  return NULL;
}

static int setup_tls(grpc_core_server_options *opts, const char *client_ca) {
  const char *dir = getenv("GRPC_INTEROP_CERTS_DIR");
  char path[4096];
  size_t clen = 0, klen = 0, calen = 0;
  if (!dir) {
    fprintf(stderr, "interop_server: GRPC_INTEROP_CERTS_DIR is not set\n");
    return 0;
  }
  snprintf(path, sizeof path, "%s/server1.pem", dir);
  char *cert = read_file(path, &clen);
  snprintf(path, sizeof path, "%s/server1.key", dir);
  char *key = read_file(path, &klen);
  char *ca = client_ca ? read_file(client_ca, &calen) : NULL;
  int ok = cert && key && (!client_ca || ca) &&
           grpc_core_server_options_set_tls(opts, (uint8_t *)cert, clen, (uint8_t *)key, klen) == GRPC_CORE_OK &&
           (!ca || grpc_core_server_options_set_tls_client_ca(opts, (uint8_t *)ca, calen, 1) == GRPC_CORE_OK);
  if (!ok) fprintf(stderr, "interop_server: cannot set up TLS (%s)\n", grpc_core_last_error());
  free(cert);
  free(key);
  free(ca);
  return ok;
}

int main(int argc, char **argv) {
  const char *port_s = flag(argc, argv, "port");
  const char *tls_s = flag(argc, argv, "use_tls");
  const char *client_ca = flag(argc, argv, "client_ca");
  int use_tls = tls_s && strcmp(tls_s, "true") == 0;
  if (!port_s) {
    fprintf(stderr, "usage: %s --port=N [--use_tls=true|false] [--client_ca=FILE]\n", argv[0]);
    return 2;
  }
  /* Signals go to the signal thread only; threads started later (the
   * library's runtime too) inherit this mask. */
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  grpc_core_server_options *opts = NULL;
  if (grpc_core_server_options_new(&opts) != GRPC_CORE_OK) return 1;
  grpc_core_server_options_set_message_limits(opts, MAX_MESSAGE, MAX_MESSAGE);
  if (use_tls && !setup_tls(opts, client_ca)) return 1;
  if (grpc_core_server_new(opts, &g_server) != GRPC_CORE_OK) return 1;
  grpc_core_server_options_free(opts);
  static const char *methods[] = {"EmptyCall", "UnaryCall", "StreamingOutputCall", "StreamingInputCall",
                                  "FullDuplexCall", "HalfDuplexCall"};
  static const int kinds[] = {GRPC_CORE_METHOD_UNARY, GRPC_CORE_METHOD_UNARY, GRPC_CORE_METHOD_SERVER_STREAMING,
                              GRPC_CORE_METHOD_CLIENT_STREAMING, GRPC_CORE_METHOD_BIDI_STREAMING,
                              GRPC_CORE_METHOD_BIDI_STREAMING};
  for (int i = 0; i < 6; i++) {
    char path[128];
    snprintf(path, sizeof path, TEST_SERVICE "%s", methods[i]);
    if (grpc_core_server_register_method(g_server, path, strlen(path), kinds[i]) != GRPC_CORE_OK) {
      fprintf(stderr, "interop_server: register %s: %s\n", path, grpc_core_last_error());
      return 1;
    }
  }
  char addr[64];
  int port = -1;
  snprintf(addr, sizeof addr, "[::]:%s", port_s);
  if (grpc_core_server_bind(g_server, addr, strlen(addr), &port) != GRPC_CORE_OK) {
    snprintf(addr, sizeof addr, "0.0.0.0:%s", port_s);
    if (grpc_core_server_bind(g_server, addr, strlen(addr), &port) != GRPC_CORE_OK) {
      fprintf(stderr, "interop_server: bind: %s\n", grpc_core_last_error());
      return 1;
    }
  }
  if (grpc_core_server_start(g_server) != GRPC_CORE_OK || grpc_core_cq_new(&g_ctl_cq) != GRPC_CORE_OK) return 1;
  pthread_t sig_thread;
  pthread_create(&sig_thread, NULL, signal_thread, &set);
  printf("listening on port %d (tls: %s)\n", port, use_tls ? "true" : "false");
  fflush(stdout);

  for (;;) {
    grpc_core_cq *cq = NULL;
    grpc_core_event ev;
    if (grpc_core_cq_new(&cq) != GRPC_CORE_OK) break;
    if (grpc_core_server_request_call(g_server, cq, TAG(1)) != GRPC_CORE_OK ||
        grpc_core_cq_next(cq, -1, &ev) != GRPC_CORE_OK || !ev.success) {
      grpc_core_cq_free(cq);
      break;
    }
    call_ctx *c = (call_ctx *)calloc(1, sizeof *c);
    c->call = ev.call;
    c->md = ev.metadata;
    c->cq = cq;
    pthread_mutex_lock(&g_mu);
    g_active_calls++;
    pthread_mutex_unlock(&g_mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, serve_call, c);
    pthread_attr_destroy(&attr);
  }

  /* Shutting down: wait for the server, then for the call threads. */
  grpc_core_event ev;
  if (grpc_core_cq_next(g_ctl_cq, 30000, &ev) != GRPC_CORE_OK || ev.op != GRPC_CORE_OP_SERVER_SHUTDOWN)
    fprintf(stderr, "interop_server: no shutdown event\n");
  pthread_join(sig_thread, NULL);
  pthread_mutex_lock(&g_mu);
  while (g_active_calls > 0) pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  grpc_core_server_free(g_server);
  grpc_core_cq_shutdown(g_ctl_cq);
  grpc_core_cq_free(g_ctl_cq);
  fprintf(stderr, "interop_server: clean exit\n");
  return 0;
}
