/* The C ABI's cost per unary call: N sequential SayHello calls through
 * libgrpc_core, printing wall and process-CPU microseconds per call, three
 * ways: the per-operation API (call_new, send, recv, status: three events),
 * the fused grpc_core_channel_unary (one event) and
 * grpc_core_channel_unary_blocking (no queue, no task).
 *
 *   unary_bench TARGET N [per-op|cq|blocking]   (default: all three)
 *
 * Compared by ffi-c/bench/run.sh with the same loop through the Rust API
 * (ffi-c/examples/rust_unary_bench.rs) against the same server. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "grpc_core.h"

#define CHECK(expr)                                                                       \
  do {                                                                                    \
    grpc_core_result r_ = (expr);                                                         \
    if (r_ != GRPC_CORE_OK) {                                                             \
      fprintf(stderr, "%s: %s (%s)\n", #expr, grpc_core_result_name(r_), grpc_core_last_error()); \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static const uint8_t request[] = {0x0a, 5, 'b', 'e', 'n', 'c', 'h'};
static const char method[] = "/helloworld.Greeter/SayHello";

static void one_call(grpc_core_channel *channel, grpc_core_cq *cq) {
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  CHECK(grpc_core_call_new(channel, method, sizeof method - 1, NULL, 0, 5000, 0, GRPC_CORE_COMPRESSION_DEFAULT, cq,
                           &call));
  CHECK(grpc_core_call_send_message(call, request, sizeof request, GRPC_CORE_SEND_LAST, (void *)1));
  /* One send-side and one receive-side operation may be in flight at once. */
  CHECK(grpc_core_call_recv_message(call, (void *)2));
  for (int i = 0; i < 2; i++) {
    CHECK(grpc_core_cq_next(cq, 10000, &ev));
    grpc_core_event_release(&ev);
  }
  int code = -1;
  CHECK(grpc_core_call_recv_status(call, (void *)3));
  CHECK(grpc_core_cq_next(cq, 10000, &ev));
  CHECK(grpc_core_status_code(ev.status, &code));
  grpc_core_event_release(&ev);
  if (code != 0) {
    fprintf(stderr, "call failed with code %d\n", code);
    exit(1);
  }
  grpc_core_call_free(call);
}

static void check_unary(grpc_core_event *ev) {
  int code = -1;
  CHECK(grpc_core_status_code(ev->status, &code));
  if (code != 0 || !ev->success || ev->message_len == 0) {
    fprintf(stderr, "unary call failed with code %d\n", code);
    exit(1);
  }
  grpc_core_event_release(ev);
}

static void one_fused(grpc_core_channel *channel, grpc_core_cq *cq) {
  grpc_core_event ev;
  CHECK(grpc_core_channel_unary(channel, method, sizeof method - 1, NULL, 0, request, sizeof request, 5000, 0,
                                GRPC_CORE_COMPRESSION_DEFAULT, cq, (void *)7));
  CHECK(grpc_core_cq_next(cq, 10000, &ev));
  check_unary(&ev);
}

static void one_blocking(grpc_core_channel *channel, grpc_core_cq *cq) {
  grpc_core_event ev;
  (void)cq;
  CHECK(grpc_core_channel_unary_blocking(channel, method, sizeof method - 1, NULL, 0, request, sizeof request, 5000,
                                         0, GRPC_CORE_COMPRESSION_DEFAULT, &ev));
  check_unary(&ev);
}

static void measure(const char *label, void (*call)(grpc_core_channel *, grpc_core_cq *), grpc_core_channel *channel,
                    grpc_core_cq *cq, long n) {
  for (int i = 0; i < 200; i++) call(channel, cq);
  double t0 = now_us(), c0 = cpu_us();
  for (long i = 0; i < n; i++) call(channel, cq);
  double t1 = now_us(), c1 = cpu_us();
  printf("%s calls=%ld wall_us_per_call=%.2f cpu_us_per_call=%.2f\n", label, n, (t1 - t0) / (double)n,
         (c1 - c0) / (double)n);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s TARGET N\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  grpc_core_cq *cq = NULL;
  grpc_core_channel *channel = NULL;
  CHECK(grpc_core_cq_new(&cq));
  CHECK(grpc_core_channel_new(argv[1], strlen(argv[1]), NULL, &channel));
  const char *only = argc > 3 ? argv[3] : "";
  if (!*only || strcmp(only, "per-op") == 0) measure("c-abi-per-op", one_call, channel, cq, n);
  if (!*only || strcmp(only, "cq") == 0) measure("c-abi-unary-cq", one_fused, channel, cq, n);
  if (!*only || strcmp(only, "blocking") == 0) measure("c-abi-unary-blocking", one_blocking, channel, cq, n);
  grpc_core_channel_free(channel);
  grpc_core_event ev;
  grpc_core_cq_shutdown(cq);
  while (grpc_core_cq_next(cq, 1000, &ev) == GRPC_CORE_OK) grpc_core_event_release(&ev);
  grpc_core_cq_free(cq);
  return 0;
}
