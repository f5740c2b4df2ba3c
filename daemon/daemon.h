// lockstepd's process: owns, in construction order, the state store, the
// database drivers (one per dialect, shared by the reconciler and the
// rollout engine), the reconciler, the metrics registry and its /metrics server, the rollout
// engine, and the
// gRPC server; continues unfinished rollouts at start; polls
// every server.poll_interval; reloads the inventory on request (SIGHUP).
// Run() blocks until Shutdown(); Shutdown() and Reload() may be called from
// any thread (the signal thread).
#ifndef LOCKSTEP_DAEMON_DAEMON_H_
#define LOCKSTEP_DAEMON_DAEMON_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "config/inventory.h"

namespace spdlog {
class logger;
}
namespace prometheus {
class Registry;
}
namespace grpc {
class Server;
}

namespace lockstep::daemon {

class Drivers;
class FleetMetrics;
class MetricsServer;
class Notifier;
class LockstepService;
class Reconciler;
class RolloutEngine;
class RolloutMetrics;
class SqliteFileLock;
class StateStore;
struct DatabaseStatus;
struct FleetSnapshot;
struct Rollout;
struct RolloutEvent;

// The gRPC health service name that reads NOT_SERVING while lockstepd may
// not start or continue rollouts (its state store refuses writes); the
// service itself ("" and lockstep.v1.Lockstep) keeps serving status.
inline constexpr char kRolloutsHealth[] = "lockstep.v1.Lockstep/rollouts";

class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Create(const std::string& config_path,
                                                        std::shared_ptr<spdlog::logger> log);
  ~Daemon();

  void Run();
  void Shutdown();
  // Re-reads the inventory; on errors logs every one and keeps the old one.
  absl::Status Reload();

 private:
  Daemon() = default;
  // The version pass every poll_interval; after each, the schema pass is
  // due, which SchemaLoop runs on its own thread (a long one never holds
  // the next version pass back; passes that came meanwhile make one).
  void PollLoop();
  void SchemaLoop();
  // A snapshot's changes from the one before (`was`: it, indexed by key).
  using SnapshotIndex = std::unordered_map<std::string, const DatabaseStatus*>;
  void LogChanges(const SnapshotIndex& was, const FleetSnapshot& after);
  void LogEvent(const Rollout& rollout, const RolloutEvent& event);
  // Fleet events for webhooks, from what a new snapshot shows
  // (FleetConditions in daemon.cc), recorded and sent.
  void NoteFleetConditions(const FleetSnapshot* before, const SnapshotIndex& was,
                           const FleetSnapshot& after);

  std::string config_path_;
  std::shared_ptr<spdlog::logger> log_;
  // flock on the state store file, held for the daemon's life (released
  // after the store closes): one lockstepd per state store.
  std::unique_ptr<SqliteFileLock> state_lock_;
  std::unique_ptr<StateStore> store_;
  std::shared_ptr<Drivers> drivers_;  // shared with the reconciler and the engine
  std::shared_ptr<Reconciler> reconciler_;  // shared with Refresh RPC threads
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<FleetMetrics> metrics_;
  std::unique_ptr<RolloutMetrics> rollout_metrics_;
  std::unique_ptr<Notifier> notifier_;     // webhooks; stopped after the engine, before the store
  std::unique_ptr<RolloutEngine> engine_;  // stopped before the reconciler closes
  std::unique_ptr<MetricsServer> metrics_server_;  // /metrics, over TLS with server.tls
  std::unique_ptr<LockstepService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::thread poller_;
  std::thread schema_poller_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;           // guarded by mu_
  bool refresh_requested_ = false;  // guarded by mu_: poll now, not at the interval
  bool schemas_due_ = false;        // guarded by mu_: a version pass ended since
  // The poller's last "N databases: state=count ..." (its thread only): an
  // unchanged one is logged at debug.
  std::string last_refresh_summary_;
  // The state store takes writes (RolloutHooks::on_store); the gRPC health
  // of kRolloutsHealth follows it.
  std::mutex health_mu_;
  bool store_ok_ = true;  // guarded by health_mu_
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DAEMON_H_
