// GetFleet load from compiled clients (tests/bench/bench_scale.py runs it).
//
//   lockstep_fleet_load SERVER CLIENTS SECONDS [parse|raw]
//
// CLIENTS threads, each with a channel (and TCP connection) of its own, call
// GetFleet for the whole fleet back to back for SECONDS and parse every
// reply, as a client of lockstep does ("parse", the default), or keep its
// bytes unparsed ("raw": the least a client can cost, so that on a machine
// whose cores the clients share, the figure is closest to lockstepd's). Prints one line of JSON:
// the number of calls, failures, latency percentiles in milliseconds, the reply's size, and the CPU
// time this process used (what the clients took from the machine).
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/v1/lockstep.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct ClientResult {
  std::vector<double> latencies_ms;
  long failures = 0;
  size_t reply_bytes = 0;
  std::string first_error;
};

void RunClient(const std::string& server, int index, bool raw, Clock::time_point end,
               ClientResult* out) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // A connection per client, as separate processes would have.
  args.SetInt("lockstep.bench_client", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
  auto stub = lockstep::v1::Lockstep::NewStub(channel);
  const grpc::internal::RpcMethod get_fleet("/lockstep.v1.Lockstep/GetFleet",
                                            grpc::internal::RpcMethod::NORMAL_RPC, channel);
  while (Clock::now() < end) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    lockstep::v1::GetFleetRequest request;
    lockstep::v1::GetFleetResponse reply;
    grpc::ByteBuffer bytes;
    const auto start = Clock::now();
    const grpc::Status status =
        raw ? grpc::internal::BlockingUnaryCall(channel.get(), get_fleet, &ctx, request, &bytes)
            : stub->GetFleet(&ctx, request, &reply);
    const auto took = Clock::now() - start;
    if (!status.ok()) {
      if (out->failures++ == 0) out->first_error = status.error_message();
      continue;
    }
    out->latencies_ms.push_back(std::chrono::duration<double, std::milli>(took).count());
    out->reply_bytes = raw ? bytes.Length() : reply.ByteSizeLong();
  }
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s SERVER CLIENTS SECONDS [parse|raw]\n", argv[0]);
    return 2;
  }
  const std::string mode = argc == 5 ? argv[4] : "parse";
  if (mode != "parse" && mode != "raw") {
    std::fprintf(stderr, "the fourth argument is parse or raw, not '%s'\n", mode.c_str());
    return 2;
  }
  const std::string server = argv[1];
  const int clients = std::atoi(argv[2]);
  const int seconds = std::atoi(argv[3]);
  if (clients < 1 || seconds < 1) {
    std::fprintf(stderr, "CLIENTS and SECONDS must be positive integers\n");
    return 2;
  }
  std::vector<ClientResult> results(clients);
  std::vector<std::thread> threads;
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(RunClient, server, i, mode == "raw", end, &results[i]);
  for (auto& t : threads) t.join();

  std::vector<double> all;
  long failures = 0;
  size_t reply_bytes = 0;
  std::string first_error;
  for (const auto& r : results) {
    all.insert(all.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    failures += r.failures;
    reply_bytes = std::max(reply_bytes, r.reply_bytes);
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  auto at = [&](double q) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(all.size() * q))];
  };
  std::printf(
      "{\"calls\": %zu, \"failures\": %ld, \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
      "\"max_ms\": %.2f, \"reply_bytes\": %zu, \"cpu_seconds\": %.2f}\n",
      all.size(), failures, at(0.5), at(0.99), all.empty() ? 0.0 : all.back(), reply_bytes,
      CpuSeconds());
  if (failures > 0) std::fprintf(stderr, "first failure: %s\n", first_error.c_str());
  return all.empty() ? 1 : 0;
}
