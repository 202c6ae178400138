/* Fused unary calls, per-call auth context, call credentials and the health
 * service, against in-process C servers (plaintext, TLS, mutual TLS).
 *
 * Each server is served by one thread that answers every call with the
 * facts it saw, as "key=value;" pairs in the response message:
 *   auth=   each authorization value of the request, in order
 *   sec=    auth property transport_security_type
 *   cn=     auth property x509_common_name
 *   tls=    grpc_core_server_call_tls_version
 *   id=     grpc_core_server_call_peer_identity(0)
 *   authn=  grpc_core_server_call_is_peer_authenticated
 *   n=      the number of auth properties (grpc_core_server_call_auth_property_at)
 * A request "fail:N" is finished with status N and no message; "sleep"
 * waits 500 ms first. Every response carries initial metadata x-init: i
 * and trailing metadata x-trail: t.
 *
 *   tp=     grpc_core_server_call_traceparent (servers with telemetry)
 * Also: telemetry (metrics and linked spans through C callbacks), per-call credentials (grpc_core_call_set_credentials on a deferred
 * call, grpc_core_channel_unary_ex / _blocking_ex), and the engine's logs
 * through grpc_core_set_log_callback.
 *
 * Usage: auth_test CERTS_DIR  (ca.pem server.pem server.key client.pem
 * client.key, from gen-certs.sh). */
#define _POSIX_C_SOURCE 200809L
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static const char *g_certs;
static char *g_ca, *g_cert, *g_key, *g_ccert, *g_ckey;
static size_t g_calen, g_certlen, g_keylen, g_ccertlen, g_ckeylen;

/* 1 if `needle` occurs in the `n` bytes at `p` (memmem is not standard C). */
static int has(const uint8_t *p, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; p && i + k <= n; i++)
    if (memcmp(p + i, needle, k) == 0) return 1;
  return 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static char *read_file(const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_certs, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = (char *)malloc(65536);
  *len = fread(buf, 1, 65536, f);
  fclose(f);
  return buf;
}

/* ------------------------------------------------------------ server ---- */

typedef struct {
  grpc_core_server *server;
  grpc_core_cq *cq;
  pthread_t thread;
  int port;
  char target[64];
  atomic_int calls;
} srv_t;

static void add_kv(char *buf, size_t cap, const char *key, const void *v, size_t n) {
  size_t len = strlen(buf);
  if (len + strlen(key) + n + 3 >= cap) return;
  len += (size_t)sprintf(buf + len, "%s=", key);
  memcpy(buf + len, v, n);
  len += n;
  buf[len++] = ';';
  buf[len] = 0;
}

static int wait_on(grpc_core_cq *cq, void *tag) {
  grpc_core_event ev;
  if (grpc_core_cq_next(cq, 20000, &ev) != GRPC_CORE_OK) return 0;
  int ok = ev.tag == tag && ev.success;
  grpc_core_event_release(&ev);
  return ok;
}

static void handle(srv_t *s, grpc_core_server_call *call, const grpc_core_metadata *md) {
  char req[128] = "", resp[4096] = "";
  grpc_core_event ev;
  if (grpc_core_server_call_recv_message(call, TAG(2)) != GRPC_CORE_OK) return;
  if (grpc_core_cq_next(s->cq, 20000, &ev) != GRPC_CORE_OK) return;
  if (ev.message_len && ev.message_len < sizeof req) memcpy(req, ev.message_data, ev.message_len);
  grpc_core_event_release(&ev);
  if (strcmp(req, "sleep") == 0) sleep_ms(500);
  int code = strncmp(req, "fail:", 5) == 0 ? atoi(req + 5) : 0;

  const uint8_t *v;
  size_t n;
  size_t nmd = 0;
  grpc_core_metadata_count(md, &nmd);
  for (size_t i = 0; i < nmd; i++) {
    grpc_core_metadata_entry e;
    if (grpc_core_metadata_get(md, i, &e) == GRPC_CORE_OK && e.key_len == 13 && memcmp(e.key, "authorization", 13) == 0)
      add_kv(resp, sizeof resp, "auth", e.value, e.value_len);
  }
  if (grpc_core_server_call_auth_property(call, "transport_security_type", 23, 0, &v, &n) == GRPC_CORE_OK)
    add_kv(resp, sizeof resp, "sec", v, n);
  if (grpc_core_server_call_auth_property(call, "x509_common_name", 16, 0, &v, &n) == GRPC_CORE_OK)
    add_kv(resp, sizeof resp, "cn", v, n);
  const char *c;
  if (grpc_core_server_call_tls_version(call, &c, &n) == GRPC_CORE_OK) add_kv(resp, sizeof resp, "tls", c, n);
  if (grpc_core_server_call_peer_identity(call, 0, &c, &n) == GRPC_CORE_OK) add_kv(resp, sizeof resp, "id", c, n);
  int authn = -1;
  grpc_core_server_call_is_peer_authenticated(call, &authn);
  char num[32];
  add_kv(resp, sizeof resp, "authn", num, (size_t)sprintf(num, "%d", authn));
  size_t props = 0;
  const char *pname;
  size_t pname_len;
  while (props < 100 &&
         grpc_core_server_call_auth_property_at(call, props, &pname, &pname_len, &v, &n) == GRPC_CORE_OK)
    props++;
  add_kv(resp, sizeof resp, "n", num, (size_t)sprintf(num, "%zu", props));
  if (grpc_core_server_call_traceparent(call, &c, &n) == GRPC_CORE_OK) add_kv(resp, sizeof resp, "tp", c, n);

  grpc_core_metadata_entry init = md_entry("x-init", "i", 1), trail = md_entry("x-trail", "t", 1);
  if (grpc_core_server_call_send_initial_metadata(call, &init, 1, TAG(3)) != GRPC_CORE_OK || !wait_on(s->cq, TAG(3)))
    return;
  if (code == 0) {
    if (grpc_core_server_call_send_message(call, (const uint8_t *)resp, strlen(resp), 0, TAG(4)) != GRPC_CORE_OK ||
        !wait_on(s->cq, TAG(4)))
      return;
  }
  if (grpc_core_server_call_finish(call, code, "failed here", code ? 11 : 0, NULL, 0, &trail, 1, TAG(5)) ==
      GRPC_CORE_OK)
    wait_on(s->cq, TAG(5));
}

static void *serve(void *arg) {
  srv_t *s = (srv_t *)arg;
  for (;;) {
    grpc_core_event ev;
    if (grpc_core_server_request_call(s->server, s->cq, TAG(1)) != GRPC_CORE_OK) break;
    if (grpc_core_cq_next(s->cq, -1, &ev) != GRPC_CORE_OK) break;
    if (!ev.success) {
      grpc_core_event_release(&ev);
      break;
    }
    grpc_core_server_call *call = ev.call;
    ev.call = NULL;
    atomic_fetch_add(&s->calls, 1);
    handle(s, call, ev.metadata);
    grpc_core_event_release(&ev);
    grpc_core_server_call_free(call);
  }
  return NULL;
}

/* tls: 0 plaintext, 1 TLS, 2 TLS asking for (not requiring) client certs. */
/* Set while starting servers that record telemetry. */
static grpc_core_telemetry *g_srv_telemetry;

static int srv_up(srv_t *s, int tls, int health) {
  memset(s, 0, sizeof *s);
  atomic_init(&s->calls, 0);
  grpc_core_server_options *opts = NULL;
  if (grpc_core_server_options_new(&opts) != GRPC_CORE_OK) return 0;
  if (tls) grpc_core_server_options_set_tls(opts, (uint8_t *)g_cert, g_certlen, (uint8_t *)g_key, g_keylen);
  if (tls == 2) grpc_core_server_options_set_tls_client_ca(opts, (uint8_t *)g_ca, g_calen, 0);
  if (g_srv_telemetry && grpc_core_server_options_set_telemetry(opts, g_srv_telemetry) != GRPC_CORE_OK) return 0;
  int ok = grpc_core_cq_new(&s->cq) == GRPC_CORE_OK && grpc_core_server_new(opts, &s->server) == GRPC_CORE_OK;
  grpc_core_server_options_free(opts);
  ok = ok && grpc_core_server_register_method(s->server, "/test.Svc/Unary", 15, GRPC_CORE_METHOD_UNARY) == GRPC_CORE_OK;
  if (ok && health) ok = grpc_core_server_enable_health(s->server) == GRPC_CORE_OK;
  ok = ok && grpc_core_server_bind(s->server, "127.0.0.1:0", 11, &s->port) == GRPC_CORE_OK &&
       grpc_core_server_start(s->server) == GRPC_CORE_OK;
  if (!ok) {
    fprintf(stderr, "server: %s\n", grpc_core_last_error());
    return 0;
  }
  snprintf(s->target, sizeof s->target, "127.0.0.1:%d", s->port);
  return pthread_create(&s->thread, NULL, serve, s) == 0;
}

static int srv_down(srv_t *s) {
  grpc_core_cq *cq = NULL;
  grpc_core_event ev;
  int ok = grpc_core_cq_new(&cq) == GRPC_CORE_OK && grpc_core_server_shutdown(s->server, 1000, cq, TAG(99)) == GRPC_CORE_OK &&
           grpc_core_cq_next(cq, 20000, &ev) == GRPC_CORE_OK && ev.tag == TAG(99);
  pthread_join(s->thread, NULL);
  ok = grpc_core_server_free(s->server) == GRPC_CORE_OK && ok;
  grpc_core_cq_shutdown(s->cq);
  while (grpc_core_cq_next(s->cq, 2000, &ev) == GRPC_CORE_OK) grpc_core_event_release(&ev);
  grpc_core_cq_free(s->cq);
  if (cq) {
    grpc_core_cq_shutdown(cq);
    grpc_core_cq_free(cq);
  }
  return ok;
}

/* ------------------------------------------------------------ client ---- */

/* tls: 0 plaintext, 1 TLS, 2 TLS with the client certificate. */
static grpc_core_channel *chan(const char *target, int tls, grpc_core_call_credentials *creds, int allow_insecure) {
  grpc_core_channel_options *o = NULL;
  grpc_core_channel *ch = NULL;
  if (grpc_core_channel_options_new(&o) != GRPC_CORE_OK) return NULL;
  if (tls) {
    grpc_core_channel_options_set_tls(o, (uint8_t *)g_ca, g_calen);
    grpc_core_channel_options_set_server_name_override(o, "localhost", 9);
  }
  if (tls == 2)
    grpc_core_channel_options_set_tls_identity(o, (uint8_t *)g_ccert, g_ccertlen, (uint8_t *)g_ckey, g_ckeylen);
  if (creds) grpc_core_channel_options_set_call_credentials(o, creds);
  if (allow_insecure) grpc_core_channel_options_set_allow_insecure_call_credentials(o, 1);
  if (grpc_core_channel_new(target, strlen(target), o, &ch) != GRPC_CORE_OK) ch = NULL;
  grpc_core_channel_options_free(o);
  return ch;
}

/* A blocking unary call: returns the status code (-100 if the ABI refused
 * it) and copies the response (or the status message) into `out`. */
static int call(grpc_core_channel *ch, const char *method, const void *req, size_t len, char *out, size_t cap) {
  grpc_core_event ev;
  out[0] = 0;
  grpc_core_result r = grpc_core_channel_unary_blocking(ch, method, strlen(method), NULL, 0, (const uint8_t *)req, len,
                                                        20000, 0, GRPC_CORE_COMPRESSION_DEFAULT, &ev);
  if (r != GRPC_CORE_OK) {
    fprintf(stderr, "unary_blocking: %s (%s)\n", grpc_core_result_name(r), grpc_core_last_error());
    return -100;
  }
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  if (ev.message) {
    size_t n = ev.message_len < cap - 1 ? ev.message_len : cap - 1;
    memcpy(out, ev.message_data, n);
    out[n] = 0;
  } else {
    status_message(ev.status, out, cap);
  }
  if (ev.op != GRPC_CORE_OP_CALL_UNARY || ev.success != (code == 0) || (code == 0) != (ev.message != NULL)) code = -101;
  grpc_core_event_release(&ev);
  if (code != 0) fprintf(stderr, "(call %s: status %d: %s)\n", method, code, out);
  return code;
}

static int call_test(grpc_core_channel *ch, const char *req, char *out, size_t cap) {
  return call(ch, "/test.Svc/Unary", req, strlen(req), out, cap);
}

/* -------------------------------------------------------------- tests ---- */

static void test_unary_fused_cq(void) {
  srv_t s;
  CHECK(srv_up(&s, 0, 0));
  grpc_core_channel *ch = chan(s.target, 0, NULL, 0);
  grpc_core_cq *cq = NULL;
  grpc_core_event ev;
  CHECK(ch);
  CHECK_OK(grpc_core_cq_new(&cq));
  grpc_core_metadata_entry md = md_entry("x-req", "r", 1);
  /* OK: one event with the response, the status and both metadata. */
  CHECK_OK(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, &md, 1, (const uint8_t *)"hi", 2, 20000, 0,
                                   GRPC_CORE_COMPRESSION_DEFAULT, cq, TAG(7)));
  CHECK_OK(wait_tag(cq, TAG(7), &ev));
  const uint8_t *v;
  int code = -1;
  CHECK(ev.op == GRPC_CORE_OP_CALL_UNARY && ev.success == 1 && ev.message && ev.status);
  CHECK(grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 0);
  CHECK(ev.message_len > 0 && has(ev.message_data, ev.message_len, "sec=insecure;"));
  CHECK(ev.initial_metadata && md_find(ev.initial_metadata, "x-init", &v) == 1 && v[0] == 'i');
  CHECK(ev.metadata && md_find(ev.metadata, "x-trail", &v) == 1 && v[0] == 't');
  CHECK_OK(grpc_core_event_release(&ev));
  CHECK(ev.message == NULL && ev.initial_metadata == NULL && ev.metadata == NULL && ev.status == NULL);
  /* A failed call: success 0, no message, the status and the trailers. */
  CHECK_OK(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)"fail:7", 6, 20000, 0,
                                   GRPC_CORE_COMPRESSION_GZIP, cq, TAG(8)));
  CHECK_OK(wait_tag(cq, TAG(8), &ev));
  char msg[128];
  CHECK(ev.success == 0 && ev.message == NULL && ev.status);
  CHECK(grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 7);
  status_message(ev.status, msg, sizeof msg);
  CHECK(strcmp(msg, "failed here") == 0);
  CHECK(ev.metadata && md_find(ev.metadata, "x-trail", &v) == 1);
  /* The server sent its headers before failing: they come back too. */
  CHECK(ev.initial_metadata && md_find(ev.initial_metadata, "x-init", &v) == 1 && v[0] == 'i');
  CHECK(md_find(ev.metadata, "x-init", &v) == -1 && md_find(ev.initial_metadata, "x-trail", &v) == -1);
  grpc_core_event_release(&ev);
  /* The deadline ends a call the server is slow to answer. */
  CHECK_OK(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)"sleep", 5, 100, 0, 0, cq,
                                   TAG(9)));
  CHECK_OK(wait_tag(cq, TAG(9), &ev));
  CHECK(ev.success == 0 && grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 4);
  grpc_core_event_release(&ev);
  /* Misuse changes nothing and starts nothing. */
  CHECK_RESULT(grpc_core_channel_unary(ch, "nope", 4, NULL, 0, NULL, 0, 100, 0, 0, cq, TAG(10)),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 100, 0x80, 0, cq, TAG(10)),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 5, 100, 0, 0, cq, TAG(10)),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_unary_blocking(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 100, 0, 0, NULL),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_cq_next(cq, 0, &ev), GRPC_CORE_TIMEOUT);
  CHECK_OK(grpc_core_cq_shutdown(cq));
  CHECK_RESULT(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 100, 0, 0, cq, TAG(10)),
               GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_RESULT(grpc_core_cq_next(cq, 1000, &ev), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_OK(grpc_core_cq_free(cq));
  /* The blocking form: same outputs. */
  char out[4096];
  CHECK(call_test(ch, "hello", out, sizeof out) == 0 && strstr(out, "sec=insecure;") && strstr(out, "authn=0;"));
  CHECK(call_test(ch, "fail:9", out, sizeof out) == 9 && strcmp(out, "failed here") == 0);
  /* An unregistered method: the server's UNIMPLEMENTED comes back as the status. */
  CHECK(call(ch, "/test.Svc/Missing", "x", 1, out, sizeof out) == 12);
  /* hi, fail:7, hello, fail:9 reached the handler, and "sleep" unless its
   * 100 ms deadline passed before the server saw it (a loaded machine). */
  CHECK(atomic_load(&s.calls) >= 4 && atomic_load(&s.calls) <= 5);
  CHECK_OK(grpc_core_channel_free(ch));
  CHECK(srv_down(&s));
}

static void test_auth_context(void) {
  srv_t tls, plain;
  CHECK(srv_up(&tls, 2, 0));
  CHECK(srv_up(&plain, 0, 0));
  char out[4096];
  /* Mutual TLS: the client certificate's identity reaches the call. */
  grpc_core_channel *ch = chan(tls.target, 2, NULL, 0);
  CHECK(ch);
  CHECK(call_test(ch, "who", out, sizeof out) == 0);
  CHECK(strstr(out, "sec=ssl;") && strstr(out, "cn=grpc-core-test-client;") && strstr(out, "authn=1;"));
  CHECK(strstr(out, "id=grpc-core-test-client;") && strstr(out, "tls=TLSv1_"));
  /* transport_security_type, security_level, x509_common_name, x509_subject, x509_pem_cert */
  CHECK(strstr(out, "n=5;"));
  grpc_core_channel_free(ch);
  /* TLS without a client certificate: encrypted, but no identity. */
  ch = chan(tls.target, 1, NULL, 0);
  CHECK(ch);
  CHECK(call_test(ch, "who", out, sizeof out) == 0);
  CHECK(strstr(out, "sec=ssl;") && !strstr(out, "cn=") && !strstr(out, "id=") && strstr(out, "authn=0;"));
  CHECK(strstr(out, "tls=TLSv1_") && strstr(out, "n=2;"));
  grpc_core_channel_free(ch);
  /* Plaintext: insecure, no TLS version. */
  ch = chan(plain.target, 0, NULL, 0);
  CHECK(ch);
  CHECK(call_test(ch, "who", out, sizeof out) == 0);
  CHECK(strstr(out, "sec=insecure;") && !strstr(out, "tls=") && strstr(out, "authn=0;") && strstr(out, "n=1;"));
  grpc_core_channel_free(ch);
  CHECK(srv_down(&tls));
  CHECK(srv_down(&plain));
}

/* The state a credentials callback shares with the test. */
typedef struct {
  pthread_mutex_t mu;
  int calls;
  int destroyed;
  int mode; /* 0: complete at once with a token; 1: park the request; 2: fail with `fail_code` */
  int fail_code;
  grpc_core_credentials_request *parked;
  char method[128], method_name[64], service_url[256];
  grpc_core_channel *channel; /* for the reentrancy check */
  grpc_core_result reentrant;
} creds_state;

static void copy_str(char *dst, size_t cap, const char *p, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, p, n);
  dst[n] = 0;
}

static void creds_cb(void *user_data, const grpc_core_auth_metadata_context *ctx,
                     grpc_core_credentials_request *req) {
  creds_state *st = (creds_state *)user_data;
  pthread_mutex_lock(&st->mu);
  st->calls++;
  copy_str(st->method, sizeof st->method, ctx->method, ctx->method_len);
  copy_str(st->method_name, sizeof st->method_name, ctx->method_name, ctx->method_name_len);
  copy_str(st->service_url, sizeof st->service_url, ctx->service_url, ctx->service_url_len);
  int mode = st->mode, fail_code = st->fail_code;
  if (st->channel) {
    /* Blocking inside a library thread is refused. */
    grpc_core_event ev;
    st->reentrant = grpc_core_channel_unary_blocking(st->channel, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 100, 0, 0,
                                                     &ev);
  }
  if (mode == 1) st->parked = req;
  pthread_mutex_unlock(&st->mu);
  if (mode == 0) {
    grpc_core_metadata_entry md = md_entry("authorization", "Bearer cb-token", 15);
    grpc_core_credentials_request_complete(req, &md, 1, 0, NULL, 0);
  } else if (mode == 2) {
    grpc_core_credentials_request_complete(req, NULL, 0, fail_code, "no token for you", 16);
  }
}

static void creds_destroy(void *user_data) {
  creds_state *st = (creds_state *)user_data;
  pthread_mutex_lock(&st->mu);
  st->destroyed++;
  pthread_mutex_unlock(&st->mu);
}

static int creds_get(creds_state *st, int *field) {
  pthread_mutex_lock(&st->mu);
  int v = *field;
  pthread_mutex_unlock(&st->mu);
  return v;
}

static void test_call_credentials_callback(void) {
  static creds_state st = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL, "", "", "", NULL, GRPC_CORE_OK};
  srv_t tls, plain;
  CHECK(srv_up(&tls, 1, 0));
  CHECK(srv_up(&plain, 0, 0));
  grpc_core_call_credentials *creds = NULL;
  CHECK_RESULT(grpc_core_call_credentials_new_callback(NULL, &st, creds_destroy, &creds), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_OK(grpc_core_call_credentials_new_callback(creds_cb, &st, creds_destroy, &creds));
  grpc_core_channel *ch = chan(tls.target, 1, creds, 0);
  grpc_core_channel *pch = chan(plain.target, 0, creds, 0);
  grpc_core_channel *ach = chan(plain.target, 0, creds, 1);
  CHECK(ch && pch && ach);
  /* Channels and options hold their own reference: freeing the handle now is fine. */
  CHECK_OK(grpc_core_call_credentials_free(creds));
  CHECK_RESULT(grpc_core_call_credentials_free(creds), GRPC_CORE_ERROR_INVALID_HANDLE);
  char out[4096];

  /* Over TLS the token reaches the server; the callback saw the call. */
  CHECK(call_test(ch, "x", out, sizeof out) == 0);
  CHECK(strstr(out, "auth=Bearer cb-token;") != NULL);
  CHECK(creds_get(&st, &st.calls) == 1);
  CHECK(strcmp(st.method, "/test.Svc/Unary") == 0 && strcmp(st.method_name, "Unary") == 0);
  CHECK(strncmp(st.service_url, "https://", 8) == 0 && strstr(st.service_url, "/test.Svc") != NULL);

  /* Over plaintext it is refused before anything is sent. */
  int before = atomic_load(&plain.calls);
  CHECK(call_test(pch, "x", out, sizeof out) == 16);
  CHECK(atomic_load(&plain.calls) == before);
  /* ... unless the channel allows it. */
  CHECK(call_test(ach, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer cb-token;"));

  /* The callback's error status ends the call; A54's forbidden codes become INTERNAL. */
  pthread_mutex_lock(&st.mu);
  st.mode = 2;
  st.fail_code = 7;
  pthread_mutex_unlock(&st.mu);
  before = atomic_load(&tls.calls);
  CHECK(call_test(ch, "x", out, sizeof out) == 7 && strstr(out, "no token for you"));
  pthread_mutex_lock(&st.mu);
  st.fail_code = 5;
  pthread_mutex_unlock(&st.mu);
  CHECK(call_test(ch, "x", out, sizeof out) == 13);
  CHECK(atomic_load(&tls.calls) == before);

  /* Completed later from another thread (this one), while the call waits. */
  pthread_mutex_lock(&st.mu);
  st.mode = 1;
  st.parked = NULL;
  st.channel = ch;
  st.reentrant = GRPC_CORE_OK;
  pthread_mutex_unlock(&st.mu);
  grpc_core_cq *cq = NULL;
  grpc_core_event ev;
  CHECK_OK(grpc_core_cq_new(&cq));
  CHECK_OK(grpc_core_channel_unary(ch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)"x", 1, 20000, 0, 0, cq, TAG(1)));
  grpc_core_credentials_request *req = NULL;
  for (int i = 0; i < 500 && !req; i++) {
    pthread_mutex_lock(&st.mu);
    req = st.parked;
    pthread_mutex_unlock(&st.mu);
    if (!req) sleep_ms(10);
  }
  CHECK(req != NULL);
  CHECK(st.reentrant == GRPC_CORE_ERROR_WRONG_STATE);
  /* Nothing completes until the request does. */
  CHECK_RESULT(grpc_core_cq_next(cq, 100, &ev), GRPC_CORE_TIMEOUT);
  /* Bad metadata and bad codes change nothing: the request is still pending. */
  grpc_core_metadata_entry bad = md_entry("Bad Key", "v", 1);
  CHECK_RESULT(grpc_core_credentials_request_complete(req, &bad, 1, 0, NULL, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_credentials_request_complete(req, NULL, 0, 99, NULL, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  grpc_core_metadata_entry md = md_entry("authorization", "Bearer later", 12);
  CHECK_OK(grpc_core_credentials_request_complete(req, &md, 1, 0, NULL, 0));
  CHECK_RESULT(grpc_core_credentials_request_complete(req, &md, 1, 0, NULL, 0), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.success == 1 && ev.message && has(ev.message_data, ev.message_len, "auth=Bearer later;"));
  grpc_core_event_release(&ev);
  grpc_core_cq_shutdown(cq);
  grpc_core_cq_free(cq);

  /* destroy runs once, when the last channel using the credentials is gone. */
  CHECK(creds_get(&st, &st.destroyed) == 0);
  grpc_core_channel_free(ch);
  grpc_core_channel_free(pch);
  grpc_core_channel_free(ach);
  CHECK(srv_down(&tls));
  CHECK(srv_down(&plain));
  for (int i = 0; i < 500 && creds_get(&st, &st.destroyed) == 0; i++) sleep_ms(10);
  CHECK(creds_get(&st, &st.destroyed) == 1);
}

static void test_access_token(void) {
  srv_t tls;
  CHECK(srv_up(&tls, 1, 0));
  grpc_core_call_credentials *tok = NULL, *tok2 = NULL, *both = NULL;
  CHECK_RESULT(grpc_core_call_credentials_new_access_token("bad\ntoken", 9, &tok), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(tok == NULL);
  CHECK_OK(grpc_core_call_credentials_new_access_token("tok-123", 7, &tok));
  grpc_core_channel *ch = chan(tls.target, 1, tok, 0);
  CHECK(ch);
  char out[4096];
  CHECK(call_test(ch, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer tok-123;"));
  grpc_core_channel_free(ch);
  /* Composed: both providers run in order, both values arrive. */
  CHECK_OK(grpc_core_call_credentials_new_access_token("tok-456", 7, &tok2));
  CHECK_OK(grpc_core_call_credentials_compose(tok2, tok, &both));
  ch = chan(tls.target, 1, both, 0);
  CHECK(ch);
  CHECK(call_test(ch, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer tok-456;auth=Bearer tok-123;"));
  grpc_core_channel_free(ch);
  CHECK_OK(grpc_core_call_credentials_free(tok));
  CHECK_OK(grpc_core_call_credentials_free(tok2));
  CHECK_OK(grpc_core_call_credentials_free(both));
  CHECK(srv_down(&tls));
}

/* ---- per-call credentials ---- */

/* grpc_core_channel_unary_blocking_ex: like call_test, with `creds` for this call only. */
static int call_ex(grpc_core_channel *ch, const grpc_core_call_credentials *creds, const char *req, char *out,
                   size_t cap) {
  grpc_core_event ev;
  out[0] = 0;
  grpc_core_result r = grpc_core_channel_unary_blocking_ex(ch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)req,
                                                           strlen(req), 20000, 0, GRPC_CORE_COMPRESSION_DEFAULT, creds,
                                                           &ev);
  if (r != GRPC_CORE_OK) {
    fprintf(stderr, "unary_blocking_ex: %s (%s)\n", grpc_core_result_name(r), grpc_core_last_error());
    return -100;
  }
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  if (ev.message) {
    size_t n = ev.message_len < cap - 1 ? ev.message_len : cap - 1;
    memcpy(out, ev.message_data, n);
    out[n] = 0;
  } else {
    status_message(ev.status, out, cap);
  }
  grpc_core_event_release(&ev);
  return code;
}

/* Drives a call made by grpc_core_call_new as a unary call (send "x" with
 * LAST, receive the response, receive the status) and frees it. Returns the
 * status code and copies the response (or the status message) into `out`;
 * -100 if an operation was refused. `*send_ok` gets the send's success. */
static int drive_call(grpc_core_cq *cq, grpc_core_call *call, int *send_ok, char *out, size_t cap) {
  grpc_core_event ev;
  int code = -100;
  out[0] = 0;
  if (grpc_core_call_send_message(call, (const uint8_t *)"x", 1, GRPC_CORE_SEND_LAST, TAG(31)) != GRPC_CORE_OK ||
      wait_tag(cq, TAG(31), &ev) != GRPC_CORE_OK)
    goto done;
  *send_ok = ev.success;
  if (grpc_core_call_recv_message(call, TAG(32)) != GRPC_CORE_OK || wait_tag(cq, TAG(32), &ev) != GRPC_CORE_OK)
    goto done;
  if (ev.message) {
    size_t n = ev.message_len < cap - 1 ? ev.message_len : cap - 1;
    memcpy(out, ev.message_data, n);
    out[n] = 0;
  }
  grpc_core_event_release(&ev);
  if (grpc_core_call_recv_status(call, TAG(33)) != GRPC_CORE_OK || wait_tag(cq, TAG(33), &ev) != GRPC_CORE_OK)
    goto done;
  grpc_core_status_code(ev.status, &code);
  if (code != 0) status_message(ev.status, out, cap);
  grpc_core_event_release(&ev);
done:
  grpc_core_call_free(call);
  return code;
}

static grpc_core_call *deferred_call(grpc_core_channel *ch, grpc_core_cq *cq, int64_t timeout_ms) {
  grpc_core_call *call = NULL;
  if (grpc_core_call_new(ch, "/test.Svc/Unary", 15, NULL, 0, timeout_ms, GRPC_CORE_CALL_DEFER_START,
                         GRPC_CORE_COMPRESSION_DEFAULT, cq, &call) != GRPC_CORE_OK) {
    fprintf(stderr, "call_new: %s\n", grpc_core_last_error());
    return NULL;
  }
  return call;
}

/* The fused unary call with per-call credentials. */
static void test_unary_ex_credentials(void) {
  srv_t tls, plain;
  CHECK(srv_up(&tls, 1, 0));
  CHECK(srv_up(&plain, 0, 0));
  grpc_core_call_credentials *tok = NULL, *ctok = NULL;
  CHECK_OK(grpc_core_call_credentials_new_access_token("call-tok", 8, &tok));
  CHECK_OK(grpc_core_call_credentials_new_access_token("chan-tok", 8, &ctok));
  grpc_core_channel *ch = chan(tls.target, 1, NULL, 0);      /* TLS, no channel credentials */
  grpc_core_channel *cch = chan(tls.target, 1, ctok, 0);     /* TLS, channel credentials */
  grpc_core_channel *pch = chan(plain.target, 0, NULL, 0);   /* plaintext */
  grpc_core_channel *pcch = chan(plain.target, 0, ctok, 1);  /* plaintext, creds allowed */
  CHECK(ch && cch && pch && pcch);
  char out[4096];

  /* The token reaches a TLS server; NULL is no credentials (the _ex form
   * with NULL is the plain call). */
  CHECK(call_ex(ch, tok, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer call-tok;") && strstr(out, "sec=ssl;"));
  CHECK(call_ex(ch, NULL, "x", out, sizeof out) == 0 && !strstr(out, "auth="));
  CHECK(call_test(ch, "x", out, sizeof out) == 0 && !strstr(out, "auth="));
  /* Composed with the channel's: both arrive, the channel's first. */
  CHECK(call_ex(cch, tok, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer chan-tok;auth=Bearer call-tok;"));
  CHECK(call_ex(cch, NULL, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer chan-tok;") &&
        !strstr(out, "call-tok"));
  /* Refused on plaintext before anything is sent ... */
  int before = atomic_load(&plain.calls);
  CHECK(call_ex(pch, tok, "x", out, sizeof out) == 16 && strstr(out, "insecure"));
  CHECK(atomic_load(&plain.calls) == before);
  CHECK(call_ex(pch, NULL, "x", out, sizeof out) == 0 && !strstr(out, "auth="));
  /* ... unless the channel allows it (and then they compose there too). */
  CHECK(call_ex(pcch, tok, "x", out, sizeof out) == 0 && strstr(out, "auth=Bearer chan-tok;auth=Bearer call-tok;"));

  /* The queued form; the handle freed right after the call started: the
   * call holds its own reference. */
  grpc_core_call_credentials *once = NULL;
  grpc_core_cq *cq = NULL;
  grpc_core_event ev;
  CHECK_OK(grpc_core_cq_new(&cq));
  CHECK_OK(grpc_core_call_credentials_new_access_token("once", 4, &once));
  CHECK_OK(grpc_core_channel_unary_ex(cch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)"x", 1, 20000, 0, 0, once,
                                      cq, TAG(1)));
  CHECK_OK(grpc_core_call_credentials_free(once));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.op == GRPC_CORE_OP_CALL_UNARY && ev.success == 1 && ev.message &&
        has(ev.message_data, ev.message_len, "auth=Bearer chan-tok;auth=Bearer once;"));
  grpc_core_event_release(&ev);
  CHECK_OK(grpc_core_channel_unary_ex(pch, "/test.Svc/Unary", 15, NULL, 0, (const uint8_t *)"x", 1, 20000, 0, 0, tok,
                                      cq, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  int code = -1;
  CHECK(ev.success == 0 && ev.message == NULL && grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK &&
        code == 16);
  grpc_core_event_release(&ev);

  /* Misuse: a freed, forged or wrongly typed credentials handle is refused
   * and starts nothing. */
  before = atomic_load(&tls.calls);
  CHECK_RESULT(grpc_core_channel_unary_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0, once, cq, TAG(3)),
               GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_unary_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0,
                                          (const grpc_core_call_credentials *)(void *)cq, cq, TAG(3)),
               GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_unary_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0,
                                          (const grpc_core_call_credentials *)(uintptr_t)0x7777770, cq, TAG(3)),
               GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_unary_ex(NULL, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0, tok, cq, TAG(3)),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_unary_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0, tok, NULL, TAG(3)),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_unary_blocking_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0, once, &ev),
               GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_unary_blocking_ex(ch, "/test.Svc/Unary", 15, NULL, 0, NULL, 0, 1000, 0, 0, tok, NULL),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_cq_next(cq, 200, &ev), GRPC_CORE_TIMEOUT);
  CHECK(atomic_load(&tls.calls) == before);
  grpc_core_cq_shutdown(cq);
  grpc_core_cq_free(cq);

  grpc_core_channel_free(ch);
  grpc_core_channel_free(cch);
  grpc_core_channel_free(pch);
  grpc_core_channel_free(pcch);
  CHECK_OK(grpc_core_call_credentials_free(tok));
  CHECK_OK(grpc_core_call_credentials_free(ctok));
  CHECK(srv_down(&tls));
  CHECK(srv_down(&plain));
}

/* grpc_core_call_set_credentials on calls made with GRPC_CORE_CALL_DEFER_START. */
static void test_call_set_credentials(void) {
  static creds_state st = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL, "", "", "", NULL, GRPC_CORE_OK};
  srv_t tls, plain;
  CHECK(srv_up(&tls, 1, 0));
  CHECK(srv_up(&plain, 0, 0));
  grpc_core_call_credentials *tok = NULL, *tok2 = NULL, *ctok = NULL, *cb = NULL;
  CHECK_OK(grpc_core_call_credentials_new_access_token("call-tok", 8, &tok));
  CHECK_OK(grpc_core_call_credentials_new_access_token("other-tok", 9, &tok2));
  CHECK_OK(grpc_core_call_credentials_new_access_token("chan-tok", 8, &ctok));
  grpc_core_channel *ch = chan(tls.target, 1, NULL, 0);
  grpc_core_channel *cch = chan(tls.target, 1, ctok, 0);
  grpc_core_channel *pch = chan(plain.target, 0, NULL, 0);
  grpc_core_channel *ach = chan(plain.target, 0, NULL, 1);
  grpc_core_cq *cq = NULL;
  CHECK(ch && cch && pch && ach);
  CHECK_OK(grpc_core_cq_new(&cq));
  char out[4096];
  int send_ok = -1;
  grpc_core_call *call;

  /* Set before the first operation: the token reaches the TLS server. */
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && send_ok == 1);
  CHECK(strstr(out, "auth=Bearer call-tok;") && strstr(out, "sec=ssl;"));
  /* Composed with the channel's: both arrive, the channel's first. */
  CHECK((call = deferred_call(cch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0);
  CHECK(strstr(out, "auth=Bearer chan-tok;auth=Bearer call-tok;"));
  /* A second set replaces the first; NULL clears (gRPC core's behaviour). */
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK_OK(grpc_core_call_set_credentials(call, tok2));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0);
  CHECK(strstr(out, "auth=Bearer other-tok;") && !strstr(out, "call-tok"));
  CHECK((call = deferred_call(cch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK_OK(grpc_core_call_set_credentials(call, NULL));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0);
  CHECK(strstr(out, "auth=Bearer chan-tok;") && !strstr(out, "call-tok"));
  /* A deferred call without credentials is an ordinary call. */
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && !strstr(out, "auth="));

  /* Refused on plaintext: the call fails with UNAUTHENTICATED, nothing sent. */
  int before = atomic_load(&plain.calls);
  CHECK((call = deferred_call(pch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 16 && send_ok == 0 && strstr(out, "insecure"));
  CHECK(atomic_load(&plain.calls) == before);
  /* ... unless the channel allows it. */
  CHECK((call = deferred_call(ach, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && strstr(out, "auth=Bearer call-tok;"));

  /* The caller frees the credentials right after setting them: the call
   * keeps its own reference, and a callback's destroy runs only once the
   * call is gone. */
  CHECK_OK(grpc_core_call_credentials_new_callback(creds_cb, &st, creds_destroy, &cb));
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, cb));
  CHECK_OK(grpc_core_call_credentials_free(cb));
  CHECK(creds_get(&st, &st.destroyed) == 0);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && strstr(out, "auth=Bearer cb-token;"));
  CHECK(creds_get(&st, &st.calls) == 1 && strcmp(st.method, "/test.Svc/Unary") == 0);
  for (int i = 0; i < 500 && creds_get(&st, &st.destroyed) == 0; i++) sleep_ms(10);
  CHECK(creds_get(&st, &st.destroyed) == 1);

  /* Misuse. NULL call, stale call, wrongly typed or freed credentials: an
   * error, and the call is unchanged (it still goes out without them). */
  CHECK_RESULT(grpc_core_call_set_credentials(NULL, tok), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_RESULT(grpc_core_call_set_credentials(call, cb), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_call_set_credentials(call, (const grpc_core_call_credentials *)(void *)cq),
               GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_call_set_credentials((grpc_core_call *)(void *)tok, tok), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && !strstr(out, "auth="));
  CHECK_RESULT(grpc_core_call_set_credentials(call, tok), GRPC_CORE_ERROR_INVALID_HANDLE); /* freed by drive_call */

  /* After the start: WRONG_STATE, nothing changes. A call made without
   * GRPC_CORE_CALL_DEFER_START has started already. */
  CHECK_OK(grpc_core_call_new(ch, "/test.Svc/Unary", 15, NULL, 0, 20000, 0, 0, cq, &call));
  CHECK_RESULT(grpc_core_call_set_credentials(call, tok), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK(strstr(grpc_core_last_error(), "GRPC_CORE_CALL_DEFER_START") != NULL);
  CHECK_RESULT(grpc_core_call_set_credentials(call, NULL), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && !strstr(out, "auth="));
  /* A deferred call starts with its first operation (here a receive). */
  grpc_core_event ev;
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_recv_initial_metadata(call, TAG(40)));
  CHECK_RESULT(grpc_core_call_set_credentials(call, tok), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"x", 1, GRPC_CORE_SEND_LAST, TAG(41)));
  for (int i = 0; i < 2; i++) {
    CHECK_OK(grpc_core_cq_next(cq, 20000, &ev));
    CHECK((ev.tag == TAG(40) || ev.tag == TAG(41)) && ev.success == 1);
    grpc_core_event_release(&ev);
  }
  CHECK_OK(grpc_core_call_recv_message(call, TAG(42)));
  CHECK_OK(wait_tag(cq, TAG(42), &ev));
  CHECK(ev.message && !has(ev.message_data, ev.message_len, "auth="));
  grpc_core_event_release(&ev);
  CHECK_OK(grpc_core_call_free(call));
  /* An operation refused (bad flags, here) does not start the call. */
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_RESULT(grpc_core_call_send_message(call, (const uint8_t *)"x", 1, 0x40, TAG(43)),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 0 && strstr(out, "auth=Bearer call-tok;"));
  /* Cancelled before its start: WRONG_STATE, and the call ends CANCELLED
   * without reaching the server. */
  before = atomic_load(&tls.calls);
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_cancel(call));
  CHECK_RESULT(grpc_core_call_set_credentials(call, tok), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 1 && send_ok == 0);
  CHECK(atomic_load(&tls.calls) == before);
  /* The deadline counts from grpc_core_call_new, not from the start. */
  CHECK((call = deferred_call(ch, cq, 100)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  sleep_ms(300);
  CHECK(drive_call(cq, call, &send_ok, out, sizeof out) == 4);
  CHECK(atomic_load(&tls.calls) == before);
  /* A deferred call freed without ever starting leaks nothing. */
  CHECK((call = deferred_call(ch, cq, 20000)) != NULL);
  CHECK_OK(grpc_core_call_set_credentials(call, tok));
  CHECK_OK(grpc_core_call_free(call));
  /* Unknown flags are still refused. */
  call = NULL;
  CHECK_RESULT(grpc_core_call_new(ch, "/test.Svc/Unary", 15, NULL, 0, 1000, 4, 0, cq, &call),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(call == NULL);
  CHECK_RESULT(grpc_core_cq_next(cq, 100, &ev), GRPC_CORE_TIMEOUT);

  grpc_core_cq_shutdown(cq);
  grpc_core_cq_free(cq);
  grpc_core_channel_free(ch);
  grpc_core_channel_free(cch);
  grpc_core_channel_free(pch);
  grpc_core_channel_free(ach);
  CHECK_OK(grpc_core_call_credentials_free(tok));
  CHECK_OK(grpc_core_call_credentials_free(tok2));
  CHECK_OK(grpc_core_call_credentials_free(ctok));
  CHECK(srv_down(&tls));
  CHECK(srv_down(&plain));
}

/* grpc.health.v1.Health/Check for `service`: the ServingStatus, or -(code) on failure. */
static int health_check(grpc_core_channel *ch, const char *service) {
  uint8_t req[128];
  size_t n = strlen(service);
  req[0] = 0x0a;
  req[1] = (uint8_t)n;
  memcpy(req + 2, service, n);
  char out[4096];
  int code = call(ch, "/grpc.health.v1.Health/Check", req, n ? n + 2 : 0, out, sizeof out);
  if (code != 0) return -code;
  /* HealthCheckResponse{status = 1: varint}; an empty message is UNKNOWN (0). */
  if (out[0] == 0) return 0;
  return out[0] == 0x08 ? out[1] : -100;
}

static void test_health(void) {
  srv_t s;
  CHECK(srv_up(&s, 0, 1));
  grpc_core_channel *ch = chan(s.target, 0, NULL, 0);
  CHECK(ch);
  CHECK(health_check(ch, "") == GRPC_CORE_SERVING_STATUS_SERVING);
  CHECK(health_check(ch, "test.Svc") == -5); /* never set: NOT_FOUND */
  CHECK_OK(grpc_core_server_set_serving_status(s.server, "test.Svc", 8, GRPC_CORE_SERVING_STATUS_NOT_SERVING));
  CHECK(health_check(ch, "test.Svc") == GRPC_CORE_SERVING_STATUS_NOT_SERVING);
  CHECK_OK(grpc_core_server_set_serving_status(s.server, "test.Svc", 8, GRPC_CORE_SERVING_STATUS_SERVING));
  CHECK(health_check(ch, "test.Svc") == GRPC_CORE_SERVING_STATUS_SERVING);
  CHECK_OK(grpc_core_server_set_serving_status(s.server, "", 0, GRPC_CORE_SERVING_STATUS_NOT_SERVING));
  CHECK(health_check(ch, "") == GRPC_CORE_SERVING_STATUS_NOT_SERVING);
  /* Misuse changes nothing. */
  CHECK_RESULT(grpc_core_server_set_serving_status(s.server, "test.Svc", 8, 7), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(health_check(ch, "test.Svc") == GRPC_CORE_SERVING_STATUS_SERVING);
  CHECK_RESULT(grpc_core_server_enable_health(s.server), GRPC_CORE_ERROR_WRONG_STATE);
  /* The library answers health calls itself; none reached the C handler. */
  CHECK(atomic_load(&s.calls) == 0);
  grpc_core_channel_free(ch);
  CHECK(srv_down(&s));
  /* Without enable_health: WRONG_STATE; and a server that registered a health method cannot enable it. */
  grpc_core_server *srv = NULL;
  CHECK_OK(grpc_core_server_new(NULL, &srv));
  CHECK_RESULT(grpc_core_server_set_serving_status(srv, "", 0, 1), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(grpc_core_server_register_method(srv, "/grpc.health.v1.Health/Check", 28, GRPC_CORE_METHOD_UNARY));
  CHECK_RESULT(grpc_core_server_enable_health(srv), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_server_free(srv));
}

/* ---- service config ---- */
static void test_service_config(void) {
  srv_t s;
  char out[256];
  grpc_core_channel_options *o = NULL;
  grpc_core_channel *ch = NULL;
  const char *bad = "{\"methodConfig\": [";
  const char *cfg = "{\"methodConfig\": [{\"name\": [{\"service\": \"test.Svc\"}], \"timeout\": \"0.1s\"}]}";
  CHECK(srv_up(&s, 0, 0));
  CHECK_OK(grpc_core_channel_options_new(&o));
  CHECK_RESULT(grpc_core_channel_options_set_service_config(o, bad, strlen(bad)), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(grpc_core_last_error(), "service config") != NULL);
  CHECK_RESULT(grpc_core_channel_options_set_service_config(o, NULL, 3), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_OK(grpc_core_channel_options_set_service_config(o, cfg, strlen(cfg)));
  CHECK_OK(grpc_core_channel_new(s.target, strlen(s.target), o, &ch));
  grpc_core_channel_options_free(o);
  CHECK(call_test(ch, "hello", out, sizeof out) == 0);
  /* The config's 100 ms timeout ends the call before the server's 500 ms sleep. */
  CHECK(call_test(ch, "sleep", out, sizeof out) == 4);
  CHECK_OK(grpc_core_channel_free(ch));
  CHECK(srv_down(&s));
}

/* ---- logs ---- */
static atomic_int g_logs, g_connect_logs;

static void on_log(void *ud, int32_t level, const char *target, size_t target_len, const char *msg,
                   size_t msg_len) {
  atomic_fetch_add(&g_logs, 1);
  if (ud == (void *)&g_logs && level == GRPC_CORE_LOG_DEBUG && target_len > 17 &&
      memcmp(target, "grpc_core::client", 17) == 0 && has((const uint8_t *)msg, msg_len, "connect failed"))
    atomic_fetch_add(&g_connect_logs, 1);
}

/* A port nothing listens on: bound, then released. */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* ---------------------------------------------------------- telemetry ---- */

typedef struct {
  pthread_mutex_t mu;
  char metrics[64][256]; /* "name|kind|unit|value|nbounds|k=v,k=v," */
  int nmetrics;
  char spans[16][160]; /* "name|trace|span|parent|remote|kind|status" */
  int nspans;
  atomic_int destroyed;
} tel_t;

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
  out[2 * n] = 0;
}

static void on_metric(void *ud, const grpc_core_metric *m) {
  tel_t *t = (tel_t *)ud;
  char line[256];
  int len = snprintf(line, sizeof line, "%.*s|%d|%.*s|%g|%zu|", (int)m->name_len, m->name, m->kind, (int)m->unit_len,
                     m->unit, m->value, m->boundaries_count);
  for (size_t i = 0; i < m->attributes_count && len > 0 && len < (int)sizeof line; i++) {
    const grpc_core_attribute *a = &m->attributes[i];
    len += snprintf(line + len, sizeof line - (size_t)len, "%.*s=%.*s,", (int)a->key_len, a->key, (int)a->value_len,
                    a->value);
  }
  pthread_mutex_lock(&t->mu);
  if (t->nmetrics < 64) strcpy(t->metrics[t->nmetrics++], line);
  pthread_mutex_unlock(&t->mu);
}

static void on_span(void *ud, const grpc_core_span *s) {
  tel_t *t = (tel_t *)ud;
  char trace[33], span[17], parent[17] = "-";
  hex(s->trace_id, 16, trace);
  hex(s->span_id, 8, span);
  if (s->has_parent) hex(s->parent_span_id, 8, parent);
  char line[160];
  snprintf(line, sizeof line, "%.*s|%s|%s|%s|%d|%d|%d", (int)s->name_len, s->name, trace, span, parent,
           s->parent_is_remote, s->kind, s->status);
  pthread_mutex_lock(&t->mu);
  if (t->nspans < 16 && s->end_unix_nanos >= s->start_unix_nanos) strcpy(t->spans[t->nspans++], line);
  pthread_mutex_unlock(&t->mu);
}

static void on_destroy(void *ud) { atomic_fetch_add(&((tel_t *)ud)->destroyed, 1); }

/* The span line named `name` (copied into out), or 0. */
static int find_span(tel_t *t, const char *name, char *out) {
  int found = 0;
  pthread_mutex_lock(&t->mu);
  for (int i = 0; i < t->nspans; i++)
    if (strncmp(t->spans[i], name, strlen(name)) == 0 && t->spans[i][strlen(name)] == '|') {
      strcpy(out, t->spans[i]);
      found++;
    }
  pthread_mutex_unlock(&t->mu);
  return found == 1;
}

/* How many metric lines start with `prefix` and contain `needle`. */
static int count_metrics(tel_t *t, const char *prefix, const char *needle) {
  int n = 0;
  pthread_mutex_lock(&t->mu);
  for (int i = 0; i < t->nmetrics; i++)
    if (strncmp(t->metrics[i], prefix, strlen(prefix)) == 0 && strstr(t->metrics[i], needle)) n++;
  pthread_mutex_unlock(&t->mu);
  return n;
}

/* Field `i` (0-based, '|'-separated) of a span line. */
static const char *field(const char *line, int i, char *out) {
  while (i-- > 0 && line) line = strchr(line, '|') ? strchr(line, '|') + 1 : NULL;
  size_t n = line ? strcspn(line, "|") : 0;
  memcpy(out, line ? line : "", n);
  out[n] = 0;
  return out;
}

static void test_telemetry(void) {
  static tel_t t;
  memset(&t, 0, sizeof t);
  pthread_mutex_init(&t.mu, NULL);
  atomic_init(&t.destroyed, 0);
  grpc_core_telemetry *tel = NULL, *bad = NULL;
  /* Misuse: no callback at all, no out-parameter. */
  CHECK_RESULT(grpc_core_telemetry_new(NULL, NULL, &t, on_destroy, &bad), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_telemetry_new(on_metric, on_span, &t, on_destroy, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK(bad == NULL && atomic_load(&t.destroyed) == 0);
  CHECK_OK(grpc_core_telemetry_new(on_metric, on_span, &t, on_destroy, &tel));

  g_srv_telemetry = tel;
  srv_t s;
  CHECK(srv_up(&s, 0, 0));
  g_srv_telemetry = NULL;
  grpc_core_channel_options *o = NULL;
  grpc_core_channel *ch = NULL;
  CHECK_OK(grpc_core_channel_options_new(&o));
  CHECK_OK(grpc_core_channel_options_set_telemetry(o, tel));
  CHECK_OK(grpc_core_channel_new(s.target, strlen(s.target), o, &ch));
  CHECK_OK(grpc_core_channel_options_free(o));
  /* The options, channel and server hold their own references. */
  CHECK_OK(grpc_core_telemetry_free(tel));
  CHECK_RESULT(grpc_core_telemetry_free(tel), GRPC_CORE_ERROR_INVALID_HANDLE);

  const char *trace = "4bf92f3577b34da6a3ce929d0e0e4736", *root = "00f067aa0ba902b7";
  char tp[64];
  snprintf(tp, sizeof tp, "00-%s-%s-01", trace, root);
  grpc_core_metadata_entry md = md_entry("traceparent", tp, strlen(tp));
  grpc_core_event ev;
  CHECK_OK(grpc_core_channel_unary_blocking(ch, "/test.Svc/Unary", 15, &md, 1, (const uint8_t *)"hi", 2, 20000, 0,
                                            GRPC_CORE_COMPRESSION_DEFAULT, &ev));
  int code = -1;
  CHECK(grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 0 && ev.message);
  char resp[4096] = "";
  if (ev.message && ev.message_len < sizeof resp) memcpy(resp, ev.message_data, ev.message_len);
  grpc_core_event_release(&ev);

  /* The server's records arrive as its call ends: wait (bounded) for them. */
  char sent[160], attempt[160], recv[160], f[64], f2[64];
  for (int i = 0; i < 500 && !(find_span(&t, "Recv.test.Svc/Unary", recv) &&
                               count_metrics(&t, "grpc.server.call.duration|", "grpc.status=OK") == 1);
       i++)
    sleep_ms(10);
  CHECK(find_span(&t, "Sent.test.Svc/Unary", sent));
  CHECK(find_span(&t, "Attempt.test.Svc/Unary", attempt));
  CHECK(find_span(&t, "Recv.test.Svc/Unary", recv));
  /* One trace, chained: root (the caller's traceparent) → Sent → Attempt → Recv. */
  CHECK(strcmp(field(sent, 1, f), trace) == 0 && strcmp(field(attempt, 1, f), trace) == 0 &&
        strcmp(field(recv, 1, f), trace) == 0);
  CHECK(strcmp(field(sent, 3, f), root) == 0 && strcmp(field(sent, 4, f2), "1") == 0);
  CHECK(strcmp(field(attempt, 3, f), field(sent, 2, f2)) == 0 && strcmp(field(attempt, 4, f2), "0") == 0);
  CHECK(strcmp(field(recv, 3, f), field(attempt, 2, f2)) == 0 && strcmp(field(recv, 4, f2), "1") == 0);
  CHECK(atoi(field(sent, 5, f)) == GRPC_CORE_SPAN_CLIENT && atoi(field(recv, 5, f)) == GRPC_CORE_SPAN_SERVER &&
        atoi(field(attempt, 5, f)) == GRPC_CORE_SPAN_INTERNAL);
  CHECK(atoi(field(recv, 6, f)) == GRPC_CORE_SPAN_STATUS_UNSET);
  /* The handler saw its own server span as traceparent. */
  char want[96];
  snprintf(want, sizeof want, "tp=00-%s-%s-01;", trace, field(recv, 2, f));
  CHECK(strstr(resp, want) != NULL);
  /* The A66 metrics, one record per measurement. */
  char target_attr[96];
  snprintf(target_attr, sizeof target_attr, "grpc.target=%s,", s.target);
  CHECK(count_metrics(&t, "grpc.client.attempt.started|1|{attempt}|1|0|", "grpc.method=test.Svc/Unary,") == 1);
  CHECK(count_metrics(&t, "grpc.client.attempt.started|", target_attr) == 1);
  CHECK(count_metrics(&t, "grpc.client.call.duration|2|s|", "|41|grpc.method=test.Svc/Unary,") == 1);
  CHECK(count_metrics(&t, "grpc.client.call.duration|", "grpc.status=OK,") == 1);
  CHECK(count_metrics(&t, "grpc.client.attempt.sent_total_compressed_message_size|2|By|2|", "grpc.status=OK") == 1);
  CHECK(count_metrics(&t, "grpc.server.call.started|1|{call}|1|", "grpc.method=test.Svc/Unary,") == 1);
  CHECK(count_metrics(&t, "grpc.server.call.rcvd_total_compressed_message_size|2|By|2|", "grpc.status=OK") == 1);

  CHECK_OK(grpc_core_channel_free(ch));
  CHECK(srv_down(&s));
  /* destroy runs once nothing uses the configuration (channel teardown may
   * finish on a library thread: wait, bounded). */
  for (int i = 0; i < 500 && atomic_load(&t.destroyed) == 0; i++) sleep_ms(10);
  CHECK(atomic_load(&t.destroyed) == 1);
}

static void test_logging(void) {
  char target[64];
  grpc_core_connectivity st;
  int i, before;
  CHECK_RESULT(grpc_core_set_log_callback(GRPC_CORE_LOG_DEBUG, NULL, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_set_log_callback(9, on_log, NULL), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_set_log_callback(GRPC_CORE_LOG_DEBUG, on_log, &g_logs));
  snprintf(target, sizeof target, "127.0.0.1:%d", dead_port());
  grpc_core_channel *ch = chan(target, 0, NULL, 0);
  CHECK(ch);
  CHECK_OK(grpc_core_channel_state(ch, 1, &st));
  for (i = 0; i < 1000 && atomic_load(&g_connect_logs) == 0; i++) sleep_ms(10);
  CHECK(atomic_load(&g_connect_logs) > 0);
  CHECK_OK(grpc_core_channel_free(ch));
  /* Cleared: a second failing channel logs nothing. */
  CHECK_OK(grpc_core_clear_log_callback());
  before = atomic_load(&g_logs);
  snprintf(target, sizeof target, "127.0.0.1:%d", dead_port());
  ch = chan(target, 0, NULL, 0);
  CHECK(ch);
  CHECK_OK(grpc_core_channel_state(ch, 1, &st));
  sleep_ms(300);
  CHECK(atomic_load(&g_logs) == before);
  CHECK_OK(grpc_core_channel_free(ch));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CERTS_DIR\n", argv[0]);
    return 2;
  }
  g_certs = argv[1];
  g_ca = read_file("ca.pem", &g_calen);
  g_cert = read_file("server.pem", &g_certlen);
  g_key = read_file("server.key", &g_keylen);
  g_ccert = read_file("client.pem", &g_ccertlen);
  g_ckey = read_file("client.key", &g_ckeylen);
  if (!g_ca || !g_cert || !g_key || !g_ccert || !g_ckey) {
    fprintf(stderr, "cannot read the test certificates in %s\n", g_certs);
    return 2;
  }
  RUN(test_unary_fused_cq);
  RUN(test_auth_context);
  RUN(test_call_credentials_callback);
  RUN(test_access_token);
  RUN(test_unary_ex_credentials);
  RUN(test_call_set_credentials);
  RUN(test_health);
  RUN(test_logging);
  RUN(test_telemetry);
  RUN(test_service_config);
  free(g_ca);
  free(g_cert);
  free(g_key);
  free(g_ccert);
  free(g_ckey);
  printf("auth_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
