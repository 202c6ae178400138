/* The C client against a grpc.testing.TestService server (the Rust interop
 * server, or ours in C): all four call kinds, metadata, deadlines,
 * cancellation, compression, connectivity, errors.
 *
 * Usage: client_test HOST:PORT [CA_PEM_FILE SERVER_NAME]
 * With a CA file the channel uses TLS with that root and server name. */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static const char *g_target;
static char *g_ca_pem;
static size_t g_ca_len;
static const char *g_server_name;

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

static grpc_core_channel *new_channel_to(const char *target) {
  grpc_core_channel_options *opts = NULL;
  grpc_core_channel *ch = NULL;
  if (grpc_core_channel_options_new(&opts) != GRPC_CORE_OK) return NULL;
  grpc_core_channel_options_set_connect_timeout(opts, 5000);
  grpc_core_channel_options_set_max_recv_message_size(opts, 16u << 20);
  if (g_ca_pem) {
    grpc_core_channel_options_set_tls(opts, (const uint8_t *)g_ca_pem, g_ca_len);
    grpc_core_channel_options_set_server_name_override(opts, g_server_name, strlen(g_server_name));
  }
  if (grpc_core_channel_new(target, strlen(target), opts, &ch) != GRPC_CORE_OK) {
    fprintf(stderr, "channel_new: %s\n", grpc_core_last_error());
    ch = NULL;
  }
  grpc_core_channel_options_free(opts);
  return ch;
}

static grpc_core_channel *new_channel(void) { return new_channel_to(g_target); }

/* The outcome of a call driven to its end. */
typedef struct {
  int code;
  char message[512];
  int nresponses;
  long last_len;        /* payload length of the last response, or -1 */
  long total_len;       /* raw bytes of all responses */
  int last_compressed;  /* the last response arrived compressed */
  grpc_core_metadata *initial;
  grpc_core_metadata *trailing;
} outcome;

static void outcome_free(outcome *o) {
  if (o->initial) grpc_core_metadata_free(o->initial);
  if (o->trailing) grpc_core_metadata_free(o->trailing);
  o->initial = o->trailing = NULL;
}

/* Receives initial metadata, every response and the status. */
static int finish_call(grpc_core_cq *cq, grpc_core_call *call, outcome *o) {
  grpc_core_event ev;
  o->last_len = -1;
  if (grpc_core_call_recv_initial_metadata(call, TAG(100)) != GRPC_CORE_OK) return 0;
  if (wait_tag(cq, TAG(100), &ev) != GRPC_CORE_OK) return 0;
  o->initial = ev.metadata; /* NULL if the call failed first */
  for (;;) {
    if (grpc_core_call_recv_message(call, TAG(101)) != GRPC_CORE_OK) return 0;
    if (wait_tag(cq, TAG(101), &ev) != GRPC_CORE_OK) return 0;
    if (!ev.message) break;
    o->nresponses++;
    o->total_len += (long)ev.message_len;
    o->last_len = response_payload_len(ev.message_data, ev.message_len);
    o->last_compressed = ev.value;
    grpc_core_buffer_free(ev.message);
  }
  if (grpc_core_call_recv_status(call, TAG(102)) != GRPC_CORE_OK) return 0;
  if (wait_tag(cq, TAG(102), &ev) != GRPC_CORE_OK) return 0;
  grpc_core_status_code(ev.status, &o->code);
  status_message(ev.status, o->message, sizeof o->message);
  grpc_core_status_free(ev.status);
  o->trailing = ev.metadata;
  return 1;
}

/* One unary call: send `req` with LAST, then finish. */
static int unary(grpc_core_channel *ch, grpc_core_cq *cq, const char *method, const pb_buf *req,
                 const grpc_core_metadata_entry *md, size_t nmd, int64_t timeout_ms, int compression,
                 outcome *o) {
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  memset(o, 0, sizeof *o);
  if (grpc_core_call_new(ch, method, strlen(method), md, nmd, timeout_ms, 0, compression, cq, &call) !=
      GRPC_CORE_OK) {
    fprintf(stderr, "call_new: %s\n", grpc_core_last_error());
    return 0;
  }
  int ok = grpc_core_call_send_message(call, req->data, req->len, GRPC_CORE_SEND_LAST, TAG(1)) == GRPC_CORE_OK &&
           wait_tag(cq, TAG(1), &ev) == GRPC_CORE_OK && finish_call(cq, call, o);
  grpc_core_call_free(call);
  return ok;
}

static grpc_core_cq *new_cq(void) {
  grpc_core_cq *cq = NULL;
  return grpc_core_cq_new(&cq) == GRPC_CORE_OK ? cq : NULL;
}

/* Shuts down, drains and frees a queue; returns the number of stray events. */
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

/* ------------------------------------------------------------- tests ---- */

static void test_version(void) {
  CHECK(strcmp(grpc_core_version(), GRPC_CORE_VERSION) == 0);
  CHECK(GRPC_CORE_VERSION_AT_LEAST(0, 1, 0));
  CHECK(!GRPC_CORE_VERSION_AT_LEAST(GRPC_CORE_VERSION_MAJOR + 1, 0, 0));
  CHECK(strcmp(grpc_core_result_name(GRPC_CORE_ERROR_BUSY), "GRPC_CORE_ERROR_BUSY") == 0);
  CHECK(strcmp(grpc_core_status_code_name(4), "DEADLINE_EXCEEDED") == 0);
}

static void test_empty_unary(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  CHECK(cq && ch);
  pb_buf req = {0};
  outcome o;
  CHECK(unary(ch, cq, TEST_SERVICE "EmptyCall", &req, NULL, 0, 10000, 0, &o));
  CHECK(o.code == 0);
  CHECK(o.nresponses == 1 && o.total_len == 0);
  outcome_free(&o);
  CHECK_OK(grpc_core_channel_free(ch));
  CHECK(drain_free(cq) == 0);
}

static void test_large_unary_with_metadata(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  CHECK(cq && ch);
  pb_buf req = {0};
  pb_field_varint(&req, 2, 314159);
  pb_payload(&req, 3, 271828);
  static const uint8_t bin[] = {0xab, 0xab, 0xab, 0x00, 0xff};
  grpc_core_metadata_entry md[2];
  md[0] = md_entry("x-grpc-test-echo-initial", "test_initial_metadata_value", 27);
  md[1] = md_entry("x-grpc-test-echo-trailing-bin", bin, sizeof bin);
  outcome o;
  int ok = unary(ch, cq, TEST_SERVICE "UnaryCall", &req, md, 2, 10000, 0, &o);
  pb_free(&req);
  CHECK(ok);
  CHECK(o.code == 0);
  CHECK(o.nresponses == 1 && o.last_len == 314159);
  const uint8_t *v = NULL;
  CHECK(o.initial && md_find(o.initial, "x-grpc-test-echo-initial", &v) == 27);
  CHECK(memcmp(v, "test_initial_metadata_value", 27) == 0);
  CHECK(o.trailing && md_find(o.trailing, "x-grpc-test-echo-trailing-bin", &v) == (long)sizeof bin);
  CHECK(memcmp(v, bin, sizeof bin) == 0);
  /* Indexed access agrees with find. */
  size_t n = 0;
  CHECK_OK(grpc_core_metadata_count(o.trailing, &n));
  CHECK(n >= 1);
  grpc_core_metadata_entry e;
  int seen = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK_OK(grpc_core_metadata_get(o.trailing, i, &e));
    if (e.key_len == 29 && memcmp(e.key, "x-grpc-test-echo-trailing-bin", 29) == 0) seen = 1;
  }
  CHECK(seen);
  CHECK_RESULT(grpc_core_metadata_get(o.trailing, n, &e), GRPC_CORE_ERROR_INVALID_ARGUMENT);
  CHECK_RESULT(grpc_core_metadata_find(o.trailing, "absent", 6, &v, &n), GRPC_CORE_NOT_FOUND);
  outcome_free(&o);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_client_streaming(void) {
  static const int sizes[] = {27182, 8, 1828, 45904};
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  const char *m = TEST_SERVICE "StreamingInputCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  for (int i = 0; i < 4; i++) {
    pb_buf req = {0};
    pb_payload(&req, 1, (size_t)sizes[i]);
    grpc_core_result r = grpc_core_call_send_message(call, req.data, req.len, 0, TAG(1));
    pb_free(&req);
    CHECK_OK(r);
    CHECK_OK(wait_tag(cq, TAG(1), &ev));
    CHECK(ev.success == 1 && ev.op == GRPC_CORE_OP_CALL_SEND_MESSAGE);
  }
  CHECK_OK(grpc_core_call_half_close(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  CHECK(ev.success == 1 && ev.op == GRPC_CORE_OP_CALL_HALF_CLOSE);
  /* Out of order: the send side is closed. */
  CHECK_RESULT(grpc_core_call_send_message(call, NULL, 0, 0, TAG(3)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_call_half_close(call, TAG(3)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_OK(grpc_core_call_recv_message(call, TAG(4)));
  CHECK_OK(wait_tag(cq, TAG(4), &ev));
  CHECK(ev.success && ev.message);
  pb_reader r = pb_reader_of(ev.message_data, ev.message_len);
  pb_field f;
  uint64_t sum = 0;
  while (pb_next(&r, &f) == 1)
    if (f.field == 1) sum = f.varint;
  grpc_core_buffer_free(ev.message);
  CHECK(sum == 74922);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(5)));
  CHECK_OK(wait_tag(cq, TAG(5), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 0);
  CHECK_OK(grpc_core_call_free(call));
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_server_streaming(void) {
  static const int sizes[] = {31415, 9, 2653, 58979};
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  pb_buf req = {0};
  for (int i = 0; i < 4; i++) pb_response_params(&req, 2, sizes[i], 0);
  const char *m = TEST_SERVICE "StreamingOutputCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  grpc_core_result r = grpc_core_call_send_message(call, req.data, req.len, GRPC_CORE_SEND_LAST, TAG(1));
  pb_free(&req);
  CHECK_OK(r);
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.success);
  for (int i = 0; i < 4; i++) {
    CHECK_OK(grpc_core_call_recv_message(call, TAG(2)));
    CHECK_OK(wait_tag(cq, TAG(2), &ev));
    CHECK(ev.message);
    long n = response_payload_len(ev.message_data, ev.message_len);
    grpc_core_buffer_free(ev.message);
    CHECK(n == sizes[i]);
  }
  CHECK_OK(grpc_core_call_recv_message(call, TAG(3)));
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  CHECK(ev.message == NULL && ev.success == 1);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(4)));
  CHECK_OK(wait_tag(cq, TAG(4), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 0);
  /* Nothing follows the status. */
  CHECK_RESULT(grpc_core_call_recv_message(call, TAG(5)), GRPC_CORE_ERROR_WRONG_STATE);
  CHECK_RESULT(grpc_core_call_recv_status(call, TAG(5)), GRPC_CORE_ERROR_WRONG_STATE);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_ping_pong(void) {
  static const int req_sizes[] = {27182, 8, 1828, 45904};
  static const int resp_sizes[] = {31415, 9, 2653, 58979};
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  const char *m = TEST_SERVICE "FullDuplexCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  for (int i = 0; i < 4; i++) {
    pb_buf req = {0};
    pb_response_params(&req, 2, resp_sizes[i], 0);
    pb_payload(&req, 3, (size_t)req_sizes[i]);
    /* Send and receive in flight at once; events may come in any order.
     * The receive goes first: nothing can arrive before the request is
     * sent, so it is surely in flight for the BUSY check (one op per side). */
    CHECK_OK(grpc_core_call_recv_message(call, TAG(2)));
    CHECK_RESULT(grpc_core_call_recv_message(call, TAG(9)), GRPC_CORE_ERROR_BUSY);
    grpc_core_result r = grpc_core_call_send_message(call, req.data, req.len, 0, TAG(1));
    pb_free(&req);
    CHECK_OK(r);
    int got_send = 0, got_recv = 0;
    long n = -1;
    while (!(got_send && got_recv)) {
      CHECK_OK(grpc_core_cq_next(cq, 10000, &ev));
      if (ev.tag == TAG(1)) {
        CHECK(ev.success);
        got_send = 1;
      } else if (ev.tag == TAG(2)) {
        CHECK(ev.message);
        n = response_payload_len(ev.message_data, ev.message_len);
        grpc_core_event_release(&ev);
        got_recv = 1;
      } else {
        CHECK(0 && "unexpected tag");
      }
    }
    CHECK(n == resp_sizes[i]);
  }
  CHECK_OK(grpc_core_call_half_close(call, TAG(3)));
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  outcome o;
  memset(&o, 0, sizeof o);
  CHECK(finish_call(cq, call, &o));
  CHECK(o.code == 0 && o.nresponses == 0);
  outcome_free(&o);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_empty_stream(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  const char *m = TEST_SERVICE "FullDuplexCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_half_close(call, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  outcome o;
  memset(&o, 0, sizeof o);
  CHECK(finish_call(cq, call, &o));
  CHECK(o.code == 0 && o.nresponses == 0);
  outcome_free(&o);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_status_code_and_message(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  CHECK(cq && ch);
  const char *msg = "test status message \xe2\x98\xba\t\n";
  pb_buf req = {0};
  pb_echo_status(&req, 7, 2, msg);
  outcome o;
  int ok = unary(ch, cq, TEST_SERVICE "UnaryCall", &req, NULL, 0, 10000, 0, &o);
  pb_free(&req);
  CHECK(ok);
  CHECK(o.code == 2);
  CHECK(strcmp(o.message, msg) == 0);
  outcome_free(&o);
  /* The same through a bidi call. */
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  const char *m = TEST_SERVICE "FullDuplexCall";
  pb_buf req2 = {0};
  pb_echo_status(&req2, 7, 13, "bidi status");
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  grpc_core_result r = grpc_core_call_send_message(call, req2.data, req2.len, GRPC_CORE_SEND_LAST, TAG(1));
  pb_free(&req2);
  CHECK_OK(r);
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  memset(&o, 0, sizeof o);
  CHECK(finish_call(cq, call, &o));
  CHECK(o.code == 13 && strcmp(o.message, "bidi status") == 0);
  outcome_free(&o);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_unimplemented(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  CHECK(cq && ch);
  pb_buf req = {0};
  outcome o;
  CHECK(unary(ch, cq, "/grpc.testing.UnimplementedService/UnimplementedCall", &req, NULL, 0, 10000, 0, &o));
  CHECK(o.code == 12);
  CHECK(o.nresponses == 0);
  outcome_free(&o);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_deadline_exceeded(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  const char *m = TEST_SERVICE "FullDuplexCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 300, 0, 0, cq, &call));
  /* The server waits for a request that never comes: the deadline ends it. */
  CHECK_OK(grpc_core_call_recv_message(call, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.message == NULL && ev.success == 0);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 4);
  /* A send after the end completes with success 0. */
  CHECK_OK(grpc_core_call_send_message(call, (const uint8_t *)"x", 1, 0, TAG(3)));
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  CHECK(ev.success == 0);
  grpc_core_call_free(call);
  /* A deadline of 0 fails before anything is sent. */
  pb_buf req = {0};
  outcome o;
  CHECK(unary(ch, cq, TEST_SERVICE "EmptyCall", &req, NULL, 0, 0, 0, &o));
  CHECK(o.code == 4);
  outcome_free(&o);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

struct canceller {
  grpc_core_call *call;
  int delay_ms;
};

static void *cancel_later(void *arg) {
  struct canceller *c = (struct canceller *)arg;
  struct timespec ts = {0, c->delay_ms * 1000000L};
  nanosleep(&ts, NULL);
  grpc_core_call_cancel(c->call);
  return NULL;
}

static void test_cancel_from_other_thread(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(cq && ch);
  const char *m = TEST_SERVICE "FullDuplexCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, -1, 0, 0, cq, &call));
  pb_buf req = {0};
  pb_response_params(&req, 2, 31415, 0);
  pb_payload(&req, 3, 27182);
  grpc_core_result r = grpc_core_call_send_message(call, req.data, req.len, 0, TAG(1));
  pb_free(&req);
  CHECK_OK(r);
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK_OK(grpc_core_call_recv_message(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  CHECK(ev.message);
  grpc_core_buffer_free(ev.message);
  /* A receive is pending (no more responses come); cancel from a thread. */
  CHECK_OK(grpc_core_call_recv_message(call, TAG(3)));
  struct canceller c = {call, 50};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, cancel_later, &c) == 0);
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  pthread_join(t, NULL);
  CHECK(ev.message == NULL && ev.success == 0);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(4)));
  CHECK_OK(wait_tag(cq, TAG(4), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 1);
  CHECK_OK(grpc_core_call_cancel(call)); /* again: no effect */
  grpc_core_call_free(call);

  /* Cancelled before it even started. */
  pb_buf empty = {0};
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, -1, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_cancel(call));
  CHECK_OK(grpc_core_call_send_message(call, empty.data, 0, 0, TAG(5)));
  CHECK_OK(wait_tag(cq, TAG(5), &ev));
  CHECK(ev.success == 0);
  CHECK_OK(grpc_core_call_recv_status(call, TAG(6)));
  CHECK_OK(wait_tag(cq, TAG(6), &ev));
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 1);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_compression(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  CHECK(cq && ch);
  /* A compressed request the server checks arrived compressed... */
  pb_buf req = {0};
  pb_field_varint(&req, 2, 314159);
  pb_payload(&req, 3, 271828);
  pb_bool_value(&req, 8, 1);
  outcome o;
  int ok = unary(ch, cq, TEST_SERVICE "UnaryCall", &req, NULL, 0, 10000, GRPC_CORE_COMPRESSION_GZIP, &o);
  CHECK(ok);
  CHECK(o.code == 0 && o.last_len == 314159);
  outcome_free(&o);
  /* ...and the server refuses it uncompressed. */
  ok = unary(ch, cq, TEST_SERVICE "UnaryCall", &req, NULL, 0, 10000, GRPC_CORE_COMPRESSION_IDENTITY, &o);
  pb_free(&req);
  CHECK(ok);
  CHECK(o.code == 3);
  outcome_free(&o);
  /* A compressed response. */
  pb_buf req2 = {0};
  pb_field_varint(&req2, 2, 31415);
  pb_bool_value(&req2, 6, 1);
  ok = unary(ch, cq, TEST_SERVICE "UnaryCall", &req2, NULL, 0, 10000, 0, &o);
  pb_free(&req2);
  CHECK(ok);
  CHECK(o.code == 0 && o.last_len == 31415 && o.last_compressed == 1);
  outcome_free(&o);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_connectivity(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_event ev;
  CHECK(cq && ch);
  grpc_core_connectivity st = -1;
  CHECK_OK(grpc_core_channel_state(ch, 0, &st));
  CHECK(st == GRPC_CORE_CONNECTIVITY_IDLE);
  CHECK_OK(grpc_core_channel_watch_state(ch, GRPC_CORE_CONNECTIVITY_IDLE, 5000, cq, TAG(1)));
  CHECK_OK(grpc_core_channel_state(ch, 1, &st));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.op == GRPC_CORE_OP_CHANNEL_WATCH_STATE && ev.success == 1);
  CHECK(ev.value != GRPC_CORE_CONNECTIVITY_IDLE);
  CHECK_OK(grpc_core_channel_ready(ch, 5000, cq, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  CHECK(ev.success == 1 && ev.value == GRPC_CORE_CONNECTIVITY_READY);
  /* No change within 100 ms: the watch times out. */
  CHECK_OK(grpc_core_channel_watch_state(ch, GRPC_CORE_CONNECTIVITY_READY, 100, cq, TAG(3)));
  CHECK_OK(wait_tag(cq, TAG(3), &ev));
  CHECK(ev.success == 0 && ev.value == GRPC_CORE_CONNECTIVITY_READY);
  CHECK_OK(grpc_core_channel_close(ch));
  /* Closing takes effect for calls at once (CANCELLED, as grpc-go) and
   * the state reaches SHUTDOWN shortly after. */
  pb_buf req = {0};
  outcome o;
  CHECK(unary(ch, cq, TEST_SERVICE "EmptyCall", &req, NULL, 0, 2000, 0, &o));
  CHECK(o.code == 1);
  for (int i = 0; i < 5; i++) {
    CHECK_OK(grpc_core_channel_state(ch, 0, &st));
    if (st == GRPC_CORE_CONNECTIVITY_SHUTDOWN) break;
    CHECK_OK(grpc_core_channel_watch_state(ch, st, 1000, cq, TAG(4)));
    CHECK_OK(wait_tag(cq, TAG(4), &ev));
  }
  CHECK(st == GRPC_CORE_CONNECTIVITY_SHUTDOWN);
  outcome_free(&o);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

static void test_unavailable(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel_to("127.0.0.1:1");
  grpc_core_event ev;
  CHECK(cq && ch);
  pb_buf req = {0};
  outcome o;
  CHECK(unary(ch, cq, TEST_SERVICE "EmptyCall", &req, NULL, 0, 5000, 0, &o));
  CHECK(o.code == 14);
  CHECK(o.initial == NULL); /* the call failed before any headers */
  outcome_free(&o);
  CHECK_OK(grpc_core_channel_ready(ch, 300, cq, TAG(1)));
  CHECK_OK(wait_tag(cq, TAG(1), &ev));
  CHECK(ev.success == 0);
  /* Wait-for-ready: the call waits for the channel until its deadline. */
  grpc_core_call *call = NULL;
  const char *m = TEST_SERVICE "EmptyCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 300, GRPC_CORE_CALL_WAIT_FOR_READY, 0, cq, &call));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(2)));
  CHECK_OK(wait_tag(cq, TAG(2), &ev));
  int code = -1;
  grpc_core_status_code(ev.status, &code);
  grpc_core_event_release(&ev);
  CHECK(code == 4);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

/* Many calls in flight on one queue, completed in whatever order. */
static void test_concurrent_calls(void) {
  enum { N = 16 };
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *calls[N];
  grpc_core_event ev;
  CHECK(cq && ch);
  pb_buf req = {0};
  pb_field_varint(&req, 2, 100);
  const char *m = TEST_SERVICE "UnaryCall";
  for (int i = 0; i < N; i++) {
    CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &calls[i]));
    CHECK_OK(grpc_core_call_send_message(calls[i], req.data, req.len, GRPC_CORE_SEND_LAST, TAG(1000 + i)));
    CHECK_OK(grpc_core_call_recv_message(calls[i], TAG(2000 + i)));
  }
  pb_free(&req);
  int sends = 0, recvs = 0;
  while (sends + recvs < 2 * N) {
    CHECK_OK(grpc_core_cq_next(cq, 10000, &ev));
    intptr_t t = (intptr_t)ev.tag;
    if (t >= 1000 && t < 1000 + N) {
      CHECK(ev.success);
      sends++;
    } else if (t >= 2000 && t < 2000 + N) {
      CHECK(ev.message && response_payload_len(ev.message_data, ev.message_len) == 100);
      grpc_core_event_release(&ev);
      recvs++;
    } else {
      CHECK(0 && "unexpected tag");
    }
  }
  for (int i = 0; i < N; i++) {
    CHECK_OK(grpc_core_call_recv_status(calls[i], TAG(3000 + i)));
  }
  for (int i = 0; i < N; i++) {
    CHECK_OK(grpc_core_cq_next(cq, 10000, &ev));
    int code = -1;
    grpc_core_status_code(ev.status, &code);
    grpc_core_event_release(&ev);
    CHECK(code == 0);
  }
  for (int i = 0; i < N; i++) grpc_core_call_free(calls[i]);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

/* The queue's fd is readable exactly while events wait. */
static void test_cq_fd(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  int fd = -1;
  CHECK(cq && ch);
  CHECK_OK(grpc_core_cq_fd(cq, &fd));
  CHECK(fd >= 0);
  struct pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0);
  const char *m = TEST_SERVICE "EmptyCall";
  CHECK_OK(grpc_core_call_new(ch, m, strlen(m), NULL, 0, 10000, 0, 0, cq, &call));
  CHECK_OK(grpc_core_call_send_message(call, NULL, 0, GRPC_CORE_SEND_LAST, TAG(1)));
  CHECK_OK(grpc_core_call_recv_status(call, TAG(2)));
  /* Event-loop style: poll the fd, then drain without blocking. */
  int seen = 0;
  while (seen < 2) {
    p.revents = 0;
    CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN));
    grpc_core_result r;
    while ((r = grpc_core_cq_next(cq, 0, &ev)) == GRPC_CORE_OK) {
      seen++;
      grpc_core_event_release(&ev);
    }
    CHECK(r == GRPC_CORE_TIMEOUT);
  }
  p.revents = 0;
  CHECK(poll(&p, 1, 0) == 0);
  /* A user event makes it readable too; shutdown+drained keeps it readable. */
  CHECK_OK(grpc_core_cq_post(cq, TAG(7), 42));
  CHECK(poll(&p, 1, 0) == 1);
  CHECK_OK(grpc_core_cq_next(cq, 0, &ev));
  CHECK(ev.op == GRPC_CORE_OP_USER && ev.tag == TAG(7) && ev.value == 42);
  grpc_core_call_free(call);
  grpc_core_channel_free(ch);
  CHECK_OK(grpc_core_cq_shutdown(cq));
  CHECK(poll(&p, 1, 0) == 1);
  CHECK_RESULT(grpc_core_cq_next(cq, 0, &ev), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_RESULT(grpc_core_cq_post(cq, TAG(8), 0), GRPC_CORE_ERROR_SHUTDOWN);
  CHECK_OK(grpc_core_cq_free(cq));
}

/* The fused unary call (one event) and its blocking form against TestService. */
static void test_unary_fused(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_channel *ch = new_channel();
  grpc_core_event ev;
  CHECK(cq && ch);
  pb_buf req = {0};
  pb_field_varint(&req, 2, 314159);
  pb_payload(&req, 3, 271828);
  static const uint8_t bin[] = {0xab, 0xab, 0xab, 0x00, 0xff};
  grpc_core_metadata_entry md[2];
  md[0] = md_entry("x-grpc-test-echo-initial", "test_initial_metadata_value", 27);
  md[1] = md_entry("x-grpc-test-echo-trailing-bin", bin, sizeof bin);
  const char *m = TEST_SERVICE "UnaryCall";
  grpc_core_result r = grpc_core_channel_unary(ch, m, strlen(m), md, 2, req.data, req.len, 10000, 0,
                                               GRPC_CORE_COMPRESSION_DEFAULT, cq, TAG(5));
  CHECK_OK(r);
  CHECK_OK(wait_tag(cq, TAG(5), &ev));
  int code = -1;
  const uint8_t *v = NULL;
  CHECK(ev.op == GRPC_CORE_OP_CALL_UNARY && ev.success == 1);
  CHECK(grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 0);
  CHECK(ev.message && response_payload_len(ev.message_data, ev.message_len) == 314159);
  CHECK(ev.initial_metadata && md_find(ev.initial_metadata, "x-grpc-test-echo-initial", &v) == 27);
  CHECK(memcmp(v, "test_initial_metadata_value", 27) == 0);
  CHECK(ev.metadata && md_find(ev.metadata, "x-grpc-test-echo-trailing-bin", &v) == (long)sizeof bin);
  CHECK(memcmp(v, bin, sizeof bin) == 0);
  CHECK_OK(grpc_core_event_release(&ev));
  /* The blocking form, with the request compressed. */
  CHECK_OK(grpc_core_channel_unary_blocking(ch, m, strlen(m), NULL, 0, req.data, req.len, 10000, 0,
                                            GRPC_CORE_COMPRESSION_GZIP, &ev));
  pb_free(&req);
  CHECK(ev.op == GRPC_CORE_OP_CALL_UNARY && ev.tag == NULL && ev.success == 1);
  CHECK(ev.message && response_payload_len(ev.message_data, ev.message_len) == 314159);
  grpc_core_event_release(&ev);
  /* A status from the server: success 0, no message, the code and message. */
  const char *msg = "test status message \xe2\x98\xba\t\n";
  pb_buf req2 = {0};
  pb_echo_status(&req2, 7, 2, msg);
  CHECK_OK(grpc_core_channel_unary_blocking(ch, m, strlen(m), NULL, 0, req2.data, req2.len, 10000, 0, 0, &ev));
  pb_free(&req2);
  char got[256];
  CHECK(ev.success == 0 && ev.message == NULL && ev.status);
  CHECK(grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 2);
  status_message(ev.status, got, sizeof got);
  CHECK(strcmp(got, msg) == 0);
  grpc_core_event_release(&ev);
  /* An unimplemented method. */
  const char *u = TEST_SERVICE "UnimplementedCall";
  CHECK_OK(grpc_core_channel_unary_blocking(ch, u, strlen(u), NULL, 0, NULL, 0, 10000, 0, 0, &ev));
  CHECK(ev.success == 0 && grpc_core_status_code(ev.status, &code) == GRPC_CORE_OK && code == 12);
  grpc_core_event_release(&ev);
  grpc_core_channel_free(ch);
  CHECK(drain_free(cq) == 0);
}

/* The eventfd is kept in step only once asked for: asking late, with an
 * event already waiting, makes it readable at once. */
static void test_cq_fd_armed_late(void) {
  grpc_core_cq *cq = new_cq();
  grpc_core_event ev;
  int fd = -1;
  CHECK(cq);
  CHECK_OK(grpc_core_cq_post(cq, TAG(1), 1));
  CHECK_OK(grpc_core_cq_fd(cq, &fd));
  struct pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN));
  CHECK_OK(grpc_core_cq_next(cq, 0, &ev));
  CHECK(ev.tag == TAG(1));
  p.revents = 0;
  CHECK(poll(&p, 1, 0) == 0);
  CHECK_OK(grpc_core_cq_post(cq, TAG(2), 2));
  CHECK(poll(&p, 1, 0) == 1);
  CHECK_OK(grpc_core_cq_next(cq, 0, &ev));
  CHECK(drain_free(cq) == 0);
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: %s HOST:PORT [CA_PEM_FILE SERVER_NAME]\n", argv[0]);
    return 2;
  }
  g_target = argv[1];
  if (argc == 4) {
    g_ca_pem = read_file(argv[2], &g_ca_len);
    if (!g_ca_pem) {
      fprintf(stderr, "cannot read %s\n", argv[2]);
      return 2;
    }
    g_server_name = argv[3];
  }
  RUN(test_version);
  RUN(test_empty_unary);
  RUN(test_large_unary_with_metadata);
  RUN(test_client_streaming);
  RUN(test_server_streaming);
  RUN(test_ping_pong);
  RUN(test_empty_stream);
  RUN(test_status_code_and_message);
  RUN(test_unimplemented);
  RUN(test_deadline_exceeded);
  RUN(test_cancel_from_other_thread);
  RUN(test_compression);
  RUN(test_connectivity);
  RUN(test_unavailable);
  RUN(test_concurrent_calls);
  RUN(test_cq_fd);
  RUN(test_cq_fd_armed_late);
  RUN(test_unary_fused);
  free(g_ca_pem);
  printf("client_test: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
