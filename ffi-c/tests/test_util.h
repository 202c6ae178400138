/* Shared helpers for the C tests of libgrpc_core: a tiny test runner,
 * checked calls, waiting for events, and a minimal protobuf encoder/decoder
 * for the grpc.testing messages (hand-rolled so the tests need nothing but
 * libc and the library under test). */
#ifndef GRPC_CORE_TEST_UTIL_H
#define GRPC_CORE_TEST_UTIL_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_core.h"

/* ------------------------------------------------------------ runner ---- */

static int g_check_failures;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      g_check_failures++;                                                    \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_RESULT(expr, want)                                              \
  do {                                                                        \
    grpc_core_result r_ = (expr);                                             \
    if (r_ != (want)) {                                                       \
      fprintf(stderr, "%s:%d: %s returned %s, want %s (last error: %s)\n",     \
              __FILE__, __LINE__, #expr, grpc_core_result_name(r_),           \
              grpc_core_result_name(want), grpc_core_last_error());           \
      g_check_failures++;                                                     \
      return;                                                                 \
    }                                                                         \
  } while (0)

#define CHECK_OK(expr) CHECK_RESULT(expr, GRPC_CORE_OK)

#define TAG(n) ((void *)(intptr_t)(n))

static int g_passed, g_failed;

static inline void run_test(const char *name, void (*fn)(void)) {
  int before = g_check_failures;
  fn();
  if (g_check_failures == before) {
    g_passed++;
    printf("PASS %s\n", name);
  } else {
    g_failed++;
    printf("FAIL %s\n", name);
  }
  fflush(stdout);
}

#define RUN(fn) run_test(#fn, fn)

/* ------------------------------------------------------------ events ---- */

/* Waits (up to 20 s) for the next event on `cq` and checks it is `tag`. */
static inline grpc_core_result wait_tag(grpc_core_cq *cq, void *tag, grpc_core_event *ev) {
  grpc_core_result r = grpc_core_cq_next(cq, 20000, ev);
  if (r != GRPC_CORE_OK) {
    fprintf(stderr, "cq_next: %s (%s)\n", grpc_core_result_name(r), grpc_core_last_error());
    return r;
  }
  if (ev->tag != tag) {
    fprintf(stderr, "unexpected event: tag %p op %d, want tag %p\n", ev->tag, (int)ev->op, tag);
    grpc_core_event_release(ev);
    return GRPC_CORE_ERROR_INTERNAL;
  }
  return GRPC_CORE_OK;
}

/* Copies a status's message into `buf` (NUL-terminated). */
static inline void status_message(const grpc_core_status *st, char *buf, size_t cap) {
  const char *m = NULL;
  size_t n = 0;
  buf[0] = 0;
  if (grpc_core_status_message(st, &m, &n) == GRPC_CORE_OK) {
    if (n >= cap) n = cap - 1;
    memcpy(buf, m, n);
    buf[n] = 0;
  }
}

/* Finds `key` in received metadata; returns its length or -1. */
static inline long md_find(const grpc_core_metadata *md, const char *key, const uint8_t **value) {
  size_t n = 0;
  if (grpc_core_metadata_find(md, key, strlen(key), value, &n) != GRPC_CORE_OK) return -1;
  return (long)n;
}

static inline grpc_core_metadata_entry md_entry(const char *key, const void *value, size_t value_len) {
  grpc_core_metadata_entry e;
  e.key = key;
  e.key_len = strlen(key);
  e.value = (const uint8_t *)value;
  e.value_len = value_len;
  return e;
}

/* ----------------------------------------------------------- protobuf ---- */

typedef struct {
  uint8_t *data;
  size_t len, cap;
} pb_buf;

static inline void pb_reserve(pb_buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->len + extra) cap *= 2;
  uint8_t *p = (uint8_t *)realloc(b->data, cap);
  if (!p) abort();
  b->data = p;
  b->cap = cap;
}

static inline void pb_varint(pb_buf *b, uint64_t v) {
  pb_reserve(b, 10);
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    b->data[b->len++] = byte | (v ? 0x80 : 0);
  } while (v);
}

static inline void pb_field_varint(pb_buf *b, uint32_t field, uint64_t v) {
  pb_varint(b, ((uint64_t)field << 3) | 0);
  pb_varint(b, v);
}

static inline void pb_field_bytes(pb_buf *b, uint32_t field, const void *p, size_t n) {
  pb_varint(b, ((uint64_t)field << 3) | 2);
  pb_varint(b, n);
  pb_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

static inline void pb_field_zeros(pb_buf *b, uint32_t field, size_t n) {
  pb_varint(b, ((uint64_t)field << 3) | 2);
  pb_varint(b, n);
  pb_reserve(b, n);
  memset(b->data + b->len, 0, n);
  b->len += n;
}

static inline void pb_free(pb_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

typedef struct {
  const uint8_t *p, *end;
} pb_reader;

typedef struct {
  uint32_t field, wire;
  uint64_t varint;
  const uint8_t *data;
  size_t len;
} pb_field;

static inline int pb_read_varint(pb_reader *r, uint64_t *v) {
  uint64_t x = 0;
  int shift = 0;
  while (r->p < r->end && shift < 64) {
    uint8_t byte = *r->p++;
    x |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = x;
      return 1;
    }
    shift += 7;
  }
  return 0;
}

/* 1: a field was read; 0: end of message; -1: malformed. */
static inline int pb_next(pb_reader *r, pb_field *f) {
  uint64_t key;
  if (r->p >= r->end) return 0;
  if (!pb_read_varint(r, &key)) return -1;
  f->field = (uint32_t)(key >> 3);
  f->wire = (uint32_t)(key & 7);
  f->data = NULL;
  f->len = 0;
  f->varint = 0;
  switch (f->wire) {
    case 0:
      return pb_read_varint(r, &f->varint) ? 1 : -1;
    case 1:
      if (r->end - r->p < 8) return -1;
      r->p += 8;
      return 1;
    case 5:
      if (r->end - r->p < 4) return -1;
      r->p += 4;
      return 1;
    case 2: {
      uint64_t n;
      if (!pb_read_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
      f->data = r->p;
      f->len = (size_t)n;
      r->p += n;
      return 1;
    }
    default:
      return -1;
  }
}

static inline pb_reader pb_reader_of(const uint8_t *p, size_t n) {
  pb_reader r;
  r.p = p;
  r.end = p + n;
  return r;
}

/* The body length of a grpc.testing.Payload (-1 if malformed). */
static inline long payload_body_len(const uint8_t *p, size_t n) {
  pb_reader r = pb_reader_of(p, n);
  pb_field f;
  long len = 0;
  int k;
  while ((k = pb_next(&r, &f)) == 1)
    if (f.field == 2 && f.wire == 2) len = (long)f.len;
  return k < 0 ? -1 : len;
}

/* The payload body length of a message whose field 1 is a Payload
 * (SimpleResponse, StreamingOutputCallResponse); -1 if absent/malformed. */
static inline long response_payload_len(const uint8_t *p, size_t n) {
  pb_reader r = pb_reader_of(p, n);
  pb_field f;
  long len = -1;
  int k;
  while ((k = pb_next(&r, &f)) == 1)
    if (f.field == 1 && f.wire == 2) len = payload_body_len(f.data, f.len);
  return k < 0 ? -1 : len;
}

/* Appends a Payload of `n` zero bytes as field `field`. */
static inline void pb_payload(pb_buf *b, uint32_t field, size_t n) {
  pb_buf p = {0};
  pb_field_zeros(&p, 2, n);
  pb_field_bytes(b, field, p.data, p.len);
  pb_free(&p);
}

/* Appends an EchoStatus{code, message} as field `field`. */
static inline void pb_echo_status(pb_buf *b, uint32_t field, int code, const char *message) {
  pb_buf s = {0};
  pb_field_varint(&s, 1, (uint64_t)code);
  pb_field_bytes(&s, 2, message, strlen(message));
  pb_field_bytes(b, field, s.data, s.len);
  pb_free(&s);
}

/* Appends a BoolValue as field `field`. */
static inline void pb_bool_value(pb_buf *b, uint32_t field, int v) {
  pb_buf s = {0};
  if (v) pb_field_varint(&s, 1, 1);
  pb_field_bytes(b, field, s.data, s.len);
  pb_free(&s);
}

/* Appends ResponseParameters{size, interval_us} as field `field`. */
static inline void pb_response_params(pb_buf *b, uint32_t field, int size, int interval_us) {
  pb_buf s = {0};
  pb_field_varint(&s, 1, (uint64_t)size);
  if (interval_us) pb_field_varint(&s, 2, (uint64_t)interval_us);
  pb_field_bytes(b, field, s.data, s.len);
  pb_free(&s);
}

#define TEST_SERVICE "/grpc.testing.TestService/"

#endif /* GRPC_CORE_TEST_UTIL_H */
