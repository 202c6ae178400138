// The grpc-go peer: the benchmark service (helloworld.Greeter, bench.Echo)
// with grpc-go's defaults, message limits raised to 64 MiB.
//
//	go-server [-port 0] [-tls-cert F -tls-key F]; prints "PORT <n>".
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	echopb "grpc-core/bench/go/pb/echo"
	hwpb "grpc-core/bench/go/pb/helloworld"
)

const maxMessage = 64 << 20

type greeter struct {
	hwpb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, in *hwpb.HelloRequest) (*hwpb.HelloReply, error) {
	return &hwpb.HelloReply{Message: "Hello, " + in.GetName() + "!"}, nil
}

type echo struct {
	echopb.UnimplementedEchoServer
}

func (echo) Unary(_ context.Context, in *echopb.Payload) (*echopb.Payload, error) {
	return &echopb.Payload{Data: in.GetData()}, nil
}

func (echo) Stream(s echopb.Echo_StreamServer) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&echopb.Payload{Data: in.GetData()}); err != nil {
			return err
		}
	}
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0 picks one)")
	cert := flag.String("tls-cert", "", "TLS certificate chain (PEM)")
	key := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()

	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage)}
	if *cert != "" {
		creds, err := credentials.NewServerTLSFromFile(*cert, *key)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	hwpb.RegisterGreeterServer(s, greeter{})
	echopb.RegisterEchoServer(s, echo{})
	fmt.Printf("PORT %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
