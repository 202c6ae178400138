/* Greeter client in C over libgrpc_core: calls helloworld.Greeter/SayHello.
 *
 *   greeter_client TARGET [NAME]
 *
 * TARGET is host:port (or unix:/path). Works against the C greeter server
 * here and the Rust one in examples/rust. The request and reply are
 * protobuf messages with one string, field 1, encoded by hand. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_core.h"

#define CHECK(expr)                                                                          \
  do {                                                                                       \
    grpc_core_result r_ = (expr);                                                            \
    if (r_ != GRPC_CORE_OK) {                                                                \
      fprintf(stderr, "%s: %s (%s)\n", #expr, grpc_core_result_name(r_), grpc_core_last_error()); \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

/* Waits for the event of `tag` (this client has one operation in flight at a time). */
static void wait_for(grpc_core_cq *cq, void *tag, grpc_core_event *ev) {
  CHECK(grpc_core_cq_next(cq, 10000, ev));
  if (ev->tag != tag) {
    fprintf(stderr, "unexpected event\n");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s TARGET [NAME]\n", argv[0]);
    return 2;
  }
  const char *target = argv[1];
  const char *name = argc > 2 ? argv[2] : "world";
  size_t name_len = strlen(name);
  if (name_len > 100) name_len = 100;

  grpc_core_cq *cq = NULL;
  grpc_core_channel *channel = NULL;
  grpc_core_call *call = NULL;
  grpc_core_event ev;
  printf("grpc_core %s (header %s)\n", grpc_core_version(), GRPC_CORE_VERSION);
  CHECK(grpc_core_cq_new(&cq));
  CHECK(grpc_core_channel_new(target, strlen(target), NULL, &channel));

  /* HelloRequest { name = 1 }: tag 0x0a, length, bytes. */
  uint8_t request[128];
  request[0] = 0x0a;
  request[1] = (uint8_t)name_len;
  memcpy(request + 2, name, name_len);

  const char *method = "/helloworld.Greeter/SayHello";
  grpc_core_metadata_entry md = {"x-client", 8, (const uint8_t *)"c-example", 9};
  CHECK(grpc_core_call_new(channel, method, strlen(method), &md, 1, 5000 /* ms deadline */, 0,
                           GRPC_CORE_COMPRESSION_DEFAULT, cq, &call));
  CHECK(grpc_core_call_send_message(call, request, 2 + name_len, GRPC_CORE_SEND_LAST, (void *)1));
  wait_for(cq, (void *)1, &ev);
  CHECK(grpc_core_call_recv_message(call, (void *)2));
  wait_for(cq, (void *)2, &ev);
  if (ev.message && ev.message_len >= 2 && ev.message_data[0] == 0x0a) {
    printf("Greeting: %.*s\n", (int)ev.message_data[1], (const char *)ev.message_data + 2);
  }
  grpc_core_event_release(&ev);
  CHECK(grpc_core_call_recv_status(call, (void *)3));
  wait_for(cq, (void *)3, &ev);
  int code = -1;
  CHECK(grpc_core_status_code(ev.status, &code));
  const char *msg = NULL;
  size_t msg_len = 0;
  CHECK(grpc_core_status_message(ev.status, &msg, &msg_len));
  printf("status: %s%s%.*s\n", grpc_core_status_code_name(code), msg_len ? ": " : "", (int)msg_len, msg);
  grpc_core_event_release(&ev);

  grpc_core_call_free(call);
  grpc_core_channel_free(channel);
  grpc_core_cq_shutdown(cq);
  while (grpc_core_cq_next(cq, 1000, &ev) == GRPC_CORE_OK) grpc_core_event_release(&ev);
  grpc_core_cq_free(cq);
  return code == 0 ? 0 : 1;
}
