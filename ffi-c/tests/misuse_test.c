/* Misuse of the ABI (NULL arguments, stale and doubly freed handles, ops out
 * of order, use after shutdown, freeing with ops in flight) must give error
 * codes and change nothing; plus the server-call surface (generic handler,
 * Unix sockets, deadline, peer, cancellation, details, mutual TLS) driven
 * from one thread against an in-process server.
 *
 * Usage: misuse_test [CERTS_DIR]  (ca.pem server.pem server.key client.pem
 * client.key for the mutual-TLS test; skipped without it). */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static const char *g_certs;

static grpc_core_cq *new_cq(void) {
  grpc_core_cq *cq = NULL;
  return grpc_core_cq_new(&cq) == GRPC_CORE_OK ? cq : NULL;
}

static int drain_free(grpc_core_cq *cq) {
  grpc_core_event ev;
  int stray = 0;
  grpc_core_cq_shutdown(cq);
  while (grpc_core_cq_next(cq, 5000, &ev) == GRPC_CORE_OK) {
    stray++;
    grpc_core_event_release(&ev);
  }
  grpc_core_cq_free(cq);
  return stray;
}

/* An in-process server: generic handler plus one registered unary method. */
typedef struct {
  grpc_core_server *server;
  grpc_core_cq *cq; /* requests and server-call ops */
  int port;
  char target[64];
} test_server;

static int server_up(test_server *s, const char *addr, grpc_core_server_options *opts) {
  memset(s, 0, sizeof *s);
  s->cq = new_cq();
  if (!s->cq || grpc_core_server_new(opts, &s->server) != GRPC_CORE_OK) return 0;
  const char *m = "/test.Svc/Unary";
  if (grpc_core_server_register_method(s->server, m, strlen(m), GRPC_CORE_METHOD_UNARY) != GRPC_CORE_OK) return 0;
  if (grpc_core_server_register_generic(s->server) != GRPC_CORE_OK) return 0;
  if (grpc_core_server_bind(s->server, addr, strlen(addr), &s->port) != GRPC_CORE_OK) {
    fprintf(stderr, "bind %s: %s\n", addr, grpc_core_last_error());
    return 0;
  }
  if (grpc_core_server_start(s->server) != GRPC_CORE_OK) return 0;
  if (strncmp(addr, "unix:", 5) == 0)
    snprintf(s->target, sizeof s->target, "%s", addr);
  else
    snprintf(s->target, sizeof s->target, "127.0.0.1:%d", s->port);
  return 1;
}

static int server_down(test_server *s) {
  grpc_core_event ev;
  int ok = grpc_core_server_shutdown(s->server, 1000, s->cq, TAG(900)) == GRPC_CORE_OK;
  /* Pending requests fail first, then the shutdown completes. */
  while (ok && grpc_core_cq_next(s->cq, 10000, &ev) == GRPC_CORE_OK) {
    grpc_core_event_release(&ev);
    if (ev.tag == TAG(900)) break;
  }
  ok = ok && grpc_core_server_free(s->server) == GRPC_CORE_OK;
  return drain_free(s->cq) == 0 && ok;
}

static grpc_core_channel *channel_to(const char *target) {
  grpc_core_channel *ch = NULL;
  return grpc_core_channel_new(target, strlen(target), NULL, &ch) == GRPC_CORE_OK ? ch : NULL;
}

/* ------------------------------------------------------------- tests ---- */

static void test_runtime_configure(void) {
  CHECK_OK(grpc_core_runtime_configure(2));
  CHECK_RESULT(grpc_core_runtime_configure(2), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK(strstr(grpc_core_last_error(), "already running") != NULL);
}

static void test_null_arguments(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_cq *sentinel_cq = (grpc_core_cq *)TAG(0x77);
  grpc_core_channel *ch = (grpc_core_channel *)TAG(0x77);
  grpc_core_event ev;
  size_t n = 12345;
  CHECK(cq);
  CHECK_RESULT(grpc_core_cq_new(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK(strstr(grpc_core_last_error(), "NULL") != NULL);
  CHECK_RESULT(grpc_core_cq_next(NULL, 0, &ev), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_cq_next(cq, 0, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_cq_fd(cq, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_cq_free(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_new(NULL, 5, NULL, &ch), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK(ch == (grpc_core_channel *)TAG(0x77)); /* out-param untouched on failure */
  CHECK_RESULT(grpc_core_channel_new("localhost:1", 11, NULL, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_call_new(NULL, "/a/b", 4, NULL, 0, -1, 0, 0, cq, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_call_send_message(NULL, NULL, 0, 0, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_call_cancel(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_call_free(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_server_new(NULL, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_server_bind(NULL, "x", 1, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_server_request_call(NULL, cq, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_server_call_finish(NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL),
               GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_metadata_count(NULL, &n), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK(n == 12345);
  CHECK_RESULT(grpc_core_status_code(NULL, NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_buffer_free(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_event_release(NULL), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_options_set_tls_identity(NULL, NULL, 0, NULL, 0), GRPC_CORE_ERROR_NULL_ARGUMENT);
  /* A non-NULL length with a NULL pointer is an error; NULL with 0 is empty. */
  grpc_core_channel_options *opts = NULL;
  CHECK_OK(grpc_core_channel_options_new(&opts));
  CHECK_RESULT(grpc_core_channel_options_set_authority(opts, NULL, 3), GRPC_CORE_ERROR_NULL_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_options_set_authority(opts, NULL, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_channel_options_free(opts));
  (void)sentinel_cq;
  CHECK(drain_free(cq) == 0);
}

static void test_invalid_handles(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to("127.0.0.1:1");
  grpc_core_channel_options *copts = NULL;
  grpc_core_server_options *sopts = NULL;
  grpc_core_server *server = NULL;
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  grpc_core_connectivity st;
  CHECK(cq && ch);
  CHECK_OK(grpc_core_channel_options_new(&copts));
  CHECK_OK(grpc_core_server_options_new(&sopts));
  CHECK_OK(grpc_core_server_new(sopts, &server));
  CHECK_OK(grpc_core_call_new(ch, "/a.B/C", 6, NULL, 0, 1000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  grpc_core_status *status = ev.status;
  grpc_core_metadata *md = ev.metadata;

  /* Forged and wrongly typed handles. */
  CHECK_RESULT(grpc_core_cq_next((grpc_core_cq *)TAG(0x1234), 0, &ev), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_cq_next((grpc_core_cq *)(void *)ch, 0, &ev), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_state((grpc_core_channel *)(void *)cq, 0, &st), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_status_free((grpc_core_status *)(void *)md), GRPC_CORE_ERROR_INVALID_HANDLE);

  /* Every object freed twice: the second free is an error, not a crash. */
  CHECK_OK(grpc_core_status_free(status));
  CHECK_RESULT(grpc_core_status_free(status), GRPC_CORE_ERROR_INVALID_HANDLE);
  int code;
  CHECK_RESULT(grpc_core_status_code(status, &code), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_metadata_free(md));
  CHECK_RESULT(grpc_core_metadata_free(md), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_call_free(call));
  CHECK_RESULT(grpc_core_call_free(call), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_call_recv_message(call, TAG(2)), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_call_cancel(call), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_channel_free(ch));
  CHECK_RESULT(grpc_core_channel_free(ch), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_channel_state(ch, 0, &st), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_channel_options_free(copts));
  CHECK_RESULT(grpc_core_channel_options_free(copts), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_server_options_free(sopts));
  CHECK_RESULT(grpc_core_server_options_free(sopts), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_OK(grpc_core_server_free(server));
  CHECK_RESULT(grpc_core_server_free(server), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_server_start(server), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK(drain_free(cq) == 0);
  CHECK_RESULT(grpc_core_cq_free(cq), GRPC_CORE_ERROR_INVALID_HANDLE);
  CHECK_RESULT(grpc_core_cq_post(cq, NULL, 0), GRPC_CORE_ERROR_INVALID_HANDLE);
}

static void test_invalid_arguments(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to("127.0.0.1:1");
  grpc_core_call *call = (grpc_core_call *)TAG(0x55);
  grpc_core_channel *bad = NULL;
  CHECK(cq && ch);
  CHECK_RESULT(grpc_core_channel_new("not a target!", 13, NULL, &bad), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(bad == NULL);
  grpc_core_metadata_entry md = md_entry("Bad Key", "v", 1);
  CHECK_RESULT(grpc_core_call_new(ch, "/a.B/C", 6, &md, 1, -1, 0, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  md = md_entry("grpc-status", "0", 1);
  CHECK_RESULT(grpc_core_call_new(ch, "/a.B/C", 6, &md, 1, -1, 0, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(grpc_core_last_error(), "reserved") != NULL);
  md = md_entry("x-ascii", "bad\nvalue", 9);
  CHECK_RESULT(grpc_core_call_new(ch, "/a.B/C", 6, &md, 1, -1, 0, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_call_new(ch, "a.B/C", 5, NULL, 0, -1, 0, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_call_new(ch, "/a\xff", 3, NULL, 0, -1, 0, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_call_new(ch, "/a.B/C", 6, NULL, 0, -1, 0, 99, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_call_new(ch, "/a.B/C", 6, NULL, 0, -1, 0x80, 0, cq, &call), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK(call == (grpc_core_call *)TAG(0x55));
  grpc_core_connectivity st;
  CHECK_RESULT(grpc_core_channel_watch_state(ch, 42, 0, cq, NULL), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_channel_state(ch, 0, &st));

  grpc_core_channel_options *opts = NULL;
  CHECK_OK(grpc_core_channel_options_new(&opts));
  CHECK_RESULT(grpc_core_channel_options_set_max_recv_message_size(opts, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_options_set_default_compression(opts, -3), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_channel_options_set_backoff(opts, 100, 10), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_channel_options_set_tls(opts, (const uint8_t *)"not pem", 7));
  CHECK_RESULT(grpc_core_channel_new("localhost:1", 11, opts, &bad), GRPC_CORE_ERROR_TLS);
  CHECK_OK(grpc_core_channel_options_free(opts));

  grpc_core_server *server = NULL;
  CHECK_OK(grpc_core_server_new(NULL, &server));
  CHECK_RESULT(grpc_core_server_register_method(server, "nope", 4, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_server_register_method(server, "/a.B/C", 6, 7), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_server_register_method(server, "/a.B/C", 6, 0));
  CHECK_RESULT(grpc_core_server_register_method(server, "/a.B/C", 6, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  /* The failures changed nothing: registration still works. */
  CHECK_OK(grpc_core_server_register_method(server, "/a.B/D", 6, 3));
  CHECK_RESULT(grpc_core_server_bind(server, "nowhere", 7, NULL), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  int port = 0;
  CHECK_OK(grpc_core_server_bind(server, "127.0.0.1:0", 11, &port));
  CHECK(port > 0);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  CHECK_RESULT(grpc_core_server_bind(server, addr, strlen(addr), NULL), GRPC_CORE_ERROR_IO);
  CHECK_OK(grpc_core_server_free(server));

  grpc_core_server_options *sopts = NULL;
  CHECK_OK(grpc_core_server_options_new(&sopts));
  CHECK_OK(grpc_core_server_options_set_tls(sopts, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1));
  CHECK_OK(grpc_core_server_new(sopts, &server));
  CHECK_RESULT(grpc_core_server_bind(server, "127.0.0.1:0", 11, NULL), GRPC_CORE_ERROR_TLS);
  CHECK_OK(grpc_core_server_free(server));
  CHECK_RESULT(grpc_core_server_options_set_max_concurrent_streams(sopts, 0), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_OK(grpc_core_server_options_free(sopts));
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

/* Client ops out of order fail and change nothing: the call still works. */
/* A send that cannot finish (more than the server's 4 MiB stream window,
 * and nobody reads): a second send and the half-close are BUSY meanwhile. */
static void test_client_send_busy(void) {
  test_server s;
  CHECK(server_up(&s, "127.0.0.1:0", NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  size_t big_len = 5u << 20;
  uint8_t *big = calloc(big_len, 1);
  CHECK(cq && ch && big);
  CHECK_OK(grpc_core_call_new(ch, "/x.Echo/Busy", 12, NULL, 0, 10000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, big, big_len, 0, TAG(1)));
  CHECK_RESULT(grpc_core_call_send_message(call, (const uint8_t *)"x", 1, 0, TAG(2)), GRPC_CORE_ERROR_BUSY);
  CHECK_RESULT(grpc_core_call_half_close(call, TAG(2)), GRPC_CORE_ERROR_BUSY);
  CHECK_OK(grpc_core_call_cancel(call));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(!ev.success);
  grpc_core_event_release(&ev);
  CHECK_OK(grpc_core_call_free(call));
  free(big);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
  CHECK(server_down(&s));
}

static void test_client_ops_out_of_order(void) {
  test_server s;
  CHECK(server_up(&s, "127.0.0.1:0", NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev, sev;
  CHECK(cq && ch);
  CHECK_OK(grpc_core_call_new(ch, "/x.Echo/Bidi", 12, NULL, 0, 10000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_recv_initial_metadata(call, TAG(1)));
  CHECK_RESULT(grpc_core_call_recv_initial_metadata(call, TAG(2)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_call_recv_message(call, TAG(2)), GRPC_CORE_ERROR_BUSY);
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"ping", 4, 0, TAG(3)));
  /* (A second send while one is in flight is BUSY: test_client_send_busy,
   * with a send that surely cannot finish; this small one may already have.) */
  CHECK_RESULT(grpc_core_call_send_message(call, NULL, 0, 0x40, TAG(4)), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  /* The server side (generic handler). */
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(10)));
  CHECK_OK(wait_tag(s.cq, TAG(10), &sev));
  CHECK(sev.success && sev.call);
  grpc_core_server_call *sc = sev.call;
  grpc_core_metadata_free(sev.metadata);
  CHECK_OK(grpc_core_server_call_send_initial_metadata(sc, NULL, 0, TAG(11)));
  CHECK_RESULT(grpc_core_server_call_send_initial_metadata(sc, NULL, 0, TAG(12)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(wait_tag(s.cq, TAG(11), &sev));
  CHECK_RESULT(grpc_core_server_call_set_compression(sc, GRPC_CORE_COMPRESSION_GZIP), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(13)));
  CHECK_OK(wait_tag(s.cq, TAG(13), &sev));
  CHECK(sev.message && sev.message_len == 4 && memcmp(sev.message_data, "ping", 4) == 0);
  CHECK_OK(grpc_core_server_call_send_message(sc, sev.message_data, sev.message_len, 0, TAG(15)));
  CHECK_RESULT(grpc_core_server_call_send_message(sc, NULL, 0, GRPC_CORE_SEND_LAST, TAG(16)),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  grpc_core_event_release(&sev);
  CHECK_OK(wait_tag(s.cq, TAG(15), &sev));
  CHECK(sev.success);
  /* Client: the rejected ops changed nothing. */
  int got = 0;
  while (got < 2) {
    CHECK_OK(grpc_core_cq_next(cq, 10000, &ev));
    CHECK(ev.tag == TAG(1) || ev.tag == TAG(3));
    CHECK(ev.success);
    grpc_core_event_release(&ev);
    got++;
  }
  CHECK_OK(grpc_core_call_recv_message(call, TAG(5)));
  CHECK_OK(wait_tag(cq, TAG(5), &ev));
  CHECK(ev.message && ev.message_len == 4);
  grpc_core_event_release(&ev);
  /* Server: a receive that cannot complete yet (the client has not sent
   * again), so a second one is surely BUSY. */
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(17)));
  CHECK_RESULT(grpc_core_server_call_recv_message(sc, TAG(14)), GRPC_CORE_ERROR_BUSY);
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"last", 4, GRPC_CORE_SEND_LAST, TAG(6)));
  CHECK_OK(wait_tag(cq, TAG(6), &ev));
  CHECK_RESULT(grpc_core_call_half_close(call, TAG(7)), GRPC_CORE_ERROR_WRONG_STATE);
  /* Server: read the last message and the half-close, finish with details. */
  CHECK_OK(wait_tag(s.cq, TAG(17), &sev));
  CHECK(sev.message);
  grpc_core_event_release(&sev);
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(18)));
  CHECK_OK(wait_tag(s.cq, TAG(18), &sev));
  CHECK(sev.message == NULL && sev.success == 1);
  CHECK_RESULT(grpc_core_server_call_finish(sc, 17, NULL, 0, NULL, 0, NULL, 0, TAG(19)),
               GRPC_CORE_ERROR_INVALID_ARGUMENT);
  static const uint8_t details[] = {8, 5, 0xff};
  grpc_core_metadata_entry tr = md_entry("x-trailer", "t", 1);
  CHECK_OK(grpc_core_server_call_finish(sc, 5, "not here", 8, details, sizeof details, &tr, 1, TAG(19)));
  CHECK_RESULT(grpc_core_server_call_finish(sc, 0, NULL, 0, NULL, 0, NULL, 0, TAG(20)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_server_call_send_message(sc, NULL, 0, 0, TAG(20)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(wait_tag(s.cq, TAG(19), &sev));
  CHECK(sev.success == 1);
  CHECK_OK(grpc_core_server_call_free(sc));
  CHECK_RESULT(grpc_core_server_call_free(sc), GRPC_CORE_ERROR_INVALID_HANDLE);
  /* Client: the end of the stream, then the status with details and trailers. */
  CHECK_OK(grpc_core_call_recv_message(call, TAG(8)));
  CHECK_OK(wait_tag(cq, TAG(8), &ev));
  CHECK(ev.message == NULL && ev.success == 0);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(9)));
  CHECK_RESULT(grpc_core_call_recv_status(call, TAG(9)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(wait_tag(cq, TAG(9), &ev));
  int code = -1;
  const uint8_t *d = NULL;
  size_t dlen = 0;
  CHECK_OK(grpc_core_status_code(ev.status, &code));
  CHECK_OK(grpc_core_status_details(ev.status, &d, &dlen));
  CHECK(code == 5 && dlen == sizeof details && memcmp(d, details, dlen) == 0);
  char msg[64];
  status_message(ev.status, msg, sizeof msg);
  CHECK(strcmp(msg, "not here") == 0);
  const uint8_t *v = NULL;
  CHECK(md_find(ev.metadata, "x-trailer", &v) == 1 && v[0] == 't');
  CHECK_OK(grpc_core_event_release(&ev));
  CHECK(ev.status == NULL && ev.metadata == NULL);
  CHECK_OK(grpc_core_call_free(call));
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
  CHECK(server_down(&s));
}

/* A send blocked by flow control (the client reads nothing) is in flight:
 * a second send and the finish are BUSY until it completes. */
static void test_server_busy(void) {
  test_server s;
  CHECK(server_up(&s, "127.0.0.1:0", NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev, sev;
  CHECK(cq && ch);
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Big", 8, NULL, 0, -1, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"a", 1, 0, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(10)));
  CHECK_OK(wait_tag(s.cq, TAG(10), &sev));
  grpc_core_server_call *sc = sev.call;
  grpc_core_metadata_free(sev.metadata);
  size_t big = 6u << 20; /* more than the client's 4 MiB stream window */
  uint8_t *data = (uint8_t *)calloc(1, big);
  CHECK(data);
  CHECK_OK(grpc_core_server_call_send_message(sc, data, big, 0, TAG(11)));
  free(data); /* copied before return */
  CHECK_RESULT(grpc_core_server_call_send_message(sc, NULL, 0, 0, TAG(12)), GRPC_CORE_ERROR_BUSY);
  CHECK_RESULT(grpc_core_server_call_finish(sc, 0, NULL, 0, NULL, 0, NULL, 0, TAG(12)), GRPC_CORE_ERROR_BUSY);
  CHECK_RESULT(grpc_core_cq_next(s.cq, 200, &sev), GRPC_CORE_TIMEOUT);
  /* The client gives up: the blocked send completes with success 0. */
  CHECK_OK(grpc_core_call_cancel(call));
  CHECK_OK(wait_tag(s.cq, TAG(11), &sev));
  CHECK(sev.success == 0);
  /* No longer BUSY. (Its success may be 1 if the reset has not reached the
   * server's stream task yet; the status goes nowhere either way.) */
  CHECK_OK(grpc_core_server_call_finish(sc, 0, NULL, 0, NULL, 0, NULL, 0, TAG(13)));
  CHECK_OK(wait_tag(s.cq, TAG(13), &sev));
  grpc_core_server_call_free(sc);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
  CHECK(server_down(&s));
}

/* The server-call surface: method, peer, deadline, metadata, cancellation. */
static void test_server_call_surface(const char *addr) {
  test_server s;
  CHECK(server_up(&s, addr, NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev, sev;
  CHECK(cq && ch);
  grpc_core_metadata_entry md[2];
  md[0] = md_entry("x-user", "alice", 5);
  md[1] = md_entry("x-raw-bin", "\x00\x01", 2);
  CHECK_OK(grpc_core_call_new(ch, "/test.Svc/Unary", 15, md, 2, 5000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"req", 3, GRPC_CORE_SEND_LAST, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(10)));
  CHECK_OK(wait_tag(s.cq, TAG(10), &sev));
  CHECK(sev.op == GRPC_CORE_OP_SERVER_REQUEST_CALL && sev.success && sev.call && sev.metadata);
  grpc_core_server_call *sc = sev.call;
  const uint8_t *v = NULL;
  CHECK(md_find(sev.metadata, "x-user", &v) == 5 && memcmp(v, "alice", 5) == 0);
  CHECK(md_find(sev.metadata, "x-raw-bin", &v) == 2 && v[0] == 0 && v[1] == 1);
  grpc_core_metadata_free(sev.metadata);
  const char *m = NULL, *peer = NULL;
  size_t mlen = 0, plen = 0;
  CHECK_OK(grpc_core_server_call_method(sc, &m, &mlen));
  CHECK(mlen == 15 && memcmp(m, "/test.Svc/Unary", 15) == 0);
  CHECK_OK(grpc_core_server_call_peer(sc, &peer, &plen));
  CHECK(plen > 0);
  if (strncmp(addr, "unix:", 5) == 0)
    CHECK(strncmp(peer, "unix:", 5) == 0);
  else
    CHECK(strncmp(peer, "127.0.0.1:", 10) == 0);
  int64_t left = 0;
  CHECK_OK(grpc_core_server_call_deadline(sc, &left));
  CHECK(left > 3000 && left <= 5000);
  int cancelled = -1;
  CHECK_OK(grpc_core_server_call_is_cancelled(sc, &cancelled));
  CHECK(cancelled == 0);
  /* Observe the client's cancellation while a receive is pending... the
   * unary request was read already, so wait with recv_close. */
  CHECK_OK(grpc_core_server_call_recv_close(sc, TAG(11)));
  CHECK_RESULT(grpc_core_server_call_recv_close(sc, TAG(12)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(13)));
  CHECK_OK(wait_tag(s.cq, TAG(13), &sev));
  CHECK(sev.message && sev.message_len == 3);
  grpc_core_event_release(&sev);
  CHECK_OK(grpc_core_call_cancel(call));
  int seen = 0;
  while (seen < 1) {
    CHECK_OK(grpc_core_cq_next(s.cq, 10000, &sev));
    CHECK(sev.tag == TAG(11));
    CHECK(sev.op == GRPC_CORE_OP_SERVER_CALL_RECV_CLOSE && sev.value == 1);
    seen++;
  }
  CHECK_OK(grpc_core_server_call_is_cancelled(sc, &cancelled));
  CHECK(cancelled == 1);
  /* Ops on a cancelled call complete with success 0. */
  CHECK_OK(grpc_core_server_call_send_message(sc, (const uint8_t *)"late", 4, 0, TAG(14)));
  CHECK_OK(wait_tag(s.cq, TAG(14), &sev));
  CHECK(sev.success == 0);
  CHECK_OK(grpc_core_server_call_finish(sc, 0, NULL, 0, NULL, 0, NULL, 0, TAG(15)));
  CHECK_OK(wait_tag(s.cq, TAG(15), &sev));
  CHECK(sev.success == 0);
  CHECK_OK(grpc_core_server_call_free(sc));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 1);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
  CHECK(server_down(&s));
}

static void test_server_call_surface_tcp(void) { test_server_call_surface("127.0.0.1:0"); }

static void test_server_call_surface_unix(void) {
  char path[64];
  snprintf(path, sizeof path, "unix:/tmp/grpc-core-misuse-%d.sock", (int)getpid());
  test_server_call_surface(path);
}

/* Freeing a call with operations in flight: the operations still complete
 * (success 0) and the other side sees the call end. */
static void test_free_with_ops_in_flight(void) {
  test_server s;
  CHECK(server_up(&s, "127.0.0.1:0", NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev, sev;
  CHECK(cq && ch);
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Hold", 9, NULL, 0, -1, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"a", 1, 0, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(10)));
  CHECK_OK(wait_tag(s.cq, TAG(10), &sev));
  grpc_core_server_call *sc = sev.call;
  grpc_core_metadata_free(sev.metadata);
  CHECK_OK(grpc_core_server_call_recv_close(sc, TAG(11)));
  /* Client: a receive pending, then free the call. */
  CHECK_OK(grpc_core_call_recv_message(call, TAG(2)));
  CHECK_OK(grpc_core_call_free(call));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  CHECK(ev.message == NULL && ev.success == 0);
  CHECK_OK(wait_tag(s.cq, TAG(11), &sev));
  CHECK(sev.value == 1);
  /* Server: a receive pending on a call the server frees unfinished. */
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Hold", 9, NULL, 0, -1, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"b", 1, 0, TAG(3)));
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  CHECK_OK(grpc_core_server_call_free(sc));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(12)));
  CHECK_OK(wait_tag(s.cq, TAG(12), &sev));
  sc = sev.call;
  grpc_core_metadata_free(sev.metadata);
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(13)));
  CHECK_OK(wait_tag(s.cq, TAG(13), &sev));
  grpc_core_event_release(&sev);
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(14)));
  CHECK_OK(grpc_core_server_call_free(sc));
  CHECK_OK(wait_tag(s.cq, TAG(14), &sev));
  CHECK(sev.message == NULL && sev.success == 0);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(4)));
  CHECK_OK(wait_tag(cq, TAG(4), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 2); /* UNKNOWN: the server freed the call without finishing it */
  grpc_core_call_free(call);
  /* Freeing a queue with an op in flight: its event is dropped, not delivered. */
  grpc_core_cq *cq2 = new_cq();
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Hold", 9, NULL, 0, -1, 0, 0, cq2, &call));
  CHECK_OK(grpc_core_call_recv_message(call, TAG(5)));
  CHECK_OK(grpc_core_cq_free(cq2));
  CHECK_OK(grpc_core_call_free(call));
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
  CHECK(server_down(&s));
}

/* Use after shutdown: the queue, the server, and calls it had. */
static void test_use_after_shutdown(void) {
  test_server s;
  CHECK(server_up(&s, "127.0.0.1:0", NULL));
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = channel_to(s.target);
  grpc_core_call *call = NULL;
  grpc_core_event ev, sev;
  CHECK(cq && ch);
  CHECK_RESULT(grpc_core_server_register_method(s.server, "/a.B/C", 6, 0), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_server_register_generic(s.server), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_server_start(s.server), GRPC_CORE_ERROR_WRONG_STATE);
  /* A call in flight, and two requests waiting. */
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Slow", 9, NULL, 0, -1, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"a", 1, 0, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(10)));
  CHECK_OK(wait_tag(s.cq, TAG(10), &sev));
  grpc_core_server_call *sc = sev.call;
  grpc_core_metadata_free(sev.metadata);
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(11)));
  CHECK_OK(grpc_core_server_request_call(s.server, s.cq, TAG(12)));
  CHECK_OK(grpc_core_server_call_recv_close(sc, TAG(13)));
  /* Shutdown with 200 ms grace: the requests fail at once, the call is cut. */
  CHECK_OK(grpc_core_server_shutdown(s.server, 200, s.cq, TAG(14)));
  CHECK_RESULT(grpc_core_server_shutdown(s.server, 0, s.cq, TAG(15)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_server_request_call(s.server, s.cq, TAG(15)), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_RESULT(grpc_core_server_bind(s.server, "127.0.0.1:0", 11, NULL), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_RESULT(grpc_core_server_start(s.server), GRPC_CORE_ERROR_SHUTDOWN);
  int seen[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4; i++) {
    CHECK_OK(grpc_core_cq_next(s.cq, 10000, &sev));
    intptr_t t = (intptr_t)sev.tag;
    CHECK(t >= 11 && t <= 14);
    seen[t - 11]++;
    if (t == 11 || t == 12) CHECK(sev.success == 0 && sev.call == NULL);
    if (t == 13) CHECK(sev.value == 1);
    if (t == 14) CHECK(sev.op == GRPC_CORE_OP_SERVER_SHUTDOWN && sev.success == 1);
  }
  CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
  /* The held call's handle stays valid; its operations fail. */
  CHECK_OK(grpc_core_server_call_recv_message(sc, TAG(16)));
  CHECK_OK(wait_tag(s.cq, TAG(16), &sev));
  CHECK(sev.success == 0);
  CHECK_OK(grpc_core_server_call_free(sc));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code != 0);
  grpc_core_call_free(call);
  /* A queue after shutdown refuses new work but delivers what was started. */
  CHECK_OK(grpc_core_call_new(ch, "/x.Y/Z", 6, NULL, 0, 2000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(3)));
  CHECK_OK(grpc_core_cq_shutdown(cq));
  CHECK_OK(grpc_core_cq_shutdown(cq)); /* idempotent */
  CHECK_RESULT(grpc_core_call_recv_message(call, TAG(4)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_call_send_message(call, NULL, 0, 0, TAG(4)), GRPC_CORE_ERROR_SHUTDOWN);
  grpc_core_call *call2 = NULL;
  CHECK_RESULT(grpc_core_call_new(ch, "/x.Y/Z", 6, NULL, 0, 2000, 0, 0, cq, &call2), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_OK(grpc_core_cq_next(cq, 10000, &ev));
  CHECK(ev.tag == TAG(3) && ev.status);
  grpc_core_event_release(&ev);
  CHECK_RESULT(grpc_core_cq_next(cq, 1000, &ev), GRPC_CORE_ERROR_SHUTDOWN);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK_OK(grpc_core_cq_free(cq));
  CHECK_OK(grpc_core_server_free(s.server));
  CHECK(drain_free(s.cq) == 0);
}

static char *read_cert(const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_certs, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = (char *)malloc(65536);
  *len = fread(buf, 1, 65536, f);
  fclose(f);
  return buf;
}

static int tls_unary(const char *target, const char *ca, size_t calen, const char *cert, size_t certlen,
                     const char *key, size_t keylen, test_server *s) {
  grpc_core_channel_options *opts = NULL;
  grpc_core_channel *ch = NULL;
  grpc_core_call *call = NULL;
  grpc_core_cq *cq = new_cq();
  grpc_core_event ev;
  int code = -1;
  grpc_core_channel_options_new(&opts);
  grpc_core_channel_options_set_tls(opts, (const uint8_t *)ca, calen);
  grpc_core_channel_options_set_server_name_override(opts, "localhost", 9);
  if (cert) grpc_core_channel_options_set_tls_identity(opts, (const uint8_t *)cert, certlen, (const uint8_t *)key, keylen);
  if (grpc_core_channel_new(target, strlen(target), opts, &ch) != GRPC_CORE_OK) return -2;
  grpc_core_channel_options_free(opts);
  grpc_core_call_new(ch, "/test.Svc/Unary", 15, NULL, 0, 5000, 0, 0, cq, &call);
  grpc_core_call_send_message(call, (const uint8_t *)"hi", 2, GRPC_CORE_SEND_LAST, TAG(1));
  grpc_core_call_recv_status(call, TAG(2));
  if (cert) {
    /* Serve it: request the call and finish OK. */
    grpc_core_event sev;
    if (grpc_core_server_request_call(s->server, s->cq, TAG(10)) == GRPC_CORE_OK &&
        wait_tag(s->cq, TAG(10), &sev) == GRPC_CORE_OK && sev.success) {
      grpc_core_server_call *sc = sev.call;
      sev.call = NULL;
      grpc_core_event_release(&sev);
      grpc_core_server_call_finish(sc, 0, NULL, 0, NULL, 0, NULL, 0, TAG(11));
      wait_tag(s->cq, TAG(11), &sev);
      grpc_core_server_call_free(sc);
    }
  }
  for (int i = 0; i < 2; i++) {
    if (grpc_core_cq_next(cq, 10000, &ev) != GRPC_CORE_OK) break;
    if (ev.tag == TAG(2)) grpc_core_status_code(ev.status, &code);
    grpc_core_event_release(&ev);
  }
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  drain_free(cq);
  return code;
}

static void test_mutual_tls(void) {
  if (!g_certs) {
    printf("SKIP test_mutual_tls (no certs dir)\n");
    return;
  }
  size_t calen, certlen, keylen, ccertlen, ckeylen;
  char *ca = read_cert("ca.pem", &calen), *cert = read_cert("server.pem", &certlen),
       *key = read_cert("server.key", &keylen), *ccert = read_cert("client.pem", &ccertlen),
       *ckey = read_cert("client.key", &ckeylen);
  CHECK(ca && cert && key && ccert && ckey);
  grpc_core_server_options *opts = NULL;
  CHECK_OK(grpc_core_server_options_new(&opts));
  CHECK_OK(grpc_core_server_options_set_tls(opts, (uint8_t *)cert, certlen, (uint8_t *)key, keylen));
  CHECK_OK(grpc_core_server_options_set_tls_client_ca(opts, (uint8_t *)ca, calen, 1));
  test_server s;
  int up = server_up(&s, "127.0.0.1:0", opts);
  grpc_core_server_options_free(opts);
  CHECK(up);
  /* With a client certificate: OK. Without: the handshake fails. */
  CHECK(tls_unary(s.target, ca, calen, ccert, ccertlen, ckey, ckeylen, &s) == 0);
  CHECK(tls_unary(s.target, ca, calen, NULL, 0, NULL, 0, &s) == 14);
  free(ca);
  free(cert);
  free(key);
  free(ccert);
  free(ckey);
  CHECK(server_down(&s));
}

int main(int argc, char **argv) {
  g_certs = argc > 1 ? argv[1] : NULL;
  RUN(test_runtime_configure);
  RUN(test_null_arguments);
  RUN(test_invalid_handles);
  RUN(test_invalid_arguments);
  RUN(test_client_ops_out_of_order);
  RUN(test_client_send_busy);
  RUN(test_server_busy);
  RUN(test_server_call_surface_tcp);
  RUN(test_server_call_surface_unix);
  RUN(test_free_with_ops_in_flight);
  RUN(test_use_after_shutdown);
  RUN(test_mutual_tls);
  printf("misuse_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
