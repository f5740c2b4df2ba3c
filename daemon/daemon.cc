#include "daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "build_info.h"
#include "daemon/core/reconciler.h"
#include "daemon/drivers/driver.h"
#include "daemon/drivers/sqlite_lock.h"
#include "daemon/metrics/fleet_metrics.h"
#include "daemon/metrics/metrics_server.h"
#include "daemon/metrics/rollout_metrics.h"
#include "daemon/notify/notifier.h"
#include "daemon/rollout/engine.h"
#include "daemon/rollout/shadow_schema.h"
#include "daemon/rpc/audit_interceptor.h"
#include "daemon/rpc/lockstep_service.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {
namespace {

std::string ReadPem(const std::string& path, absl::Status* error) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    *error = absl::FailedPreconditionError(absl::StrCat("cannot read ", path));
  }
  return text.str();
}

// How often gRPC looks at server.tls's files for a new certificate, key
// or client CA: a rotated certificate is served without a restart.
constexpr unsigned kTlsRefreshSeconds = 5;

// server.tls as gRPC credentials (client certificates required when
// client_ca is set), watched for rotation; plaintext without it.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::ServerConfig& server) {
  if (!server.tls) return grpc::InsecureServerCredentials();
  absl::Status error;  // each file must be readable PEM now; later changes are picked up
  for (const std::string* path : {&server.tls->key, &server.tls->cert, &server.tls->client_ca}) {
    if (!path->empty()) ReadPem(*path, &error);
  }
  if (!error.ok()) return absl::Status(error.code(), absl::StrCat("server.tls: ", error.message()));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      server.tls->key, server.tls->cert, server.tls->client_ca, kTlsRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!server.tls->client_ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

int CountDatabases(const config::Inventory& inv) {
  int n = 0;
  for (const auto& e : inv.environments) n += static_cast<int>(e.databases.size());
  return n;
}

// What webhooks are told of in a new snapshot (notify: schema_drift,
// checksum_changed): a database whose schema was judged drift (or judged a
// match again), a revision file edited after databases applied it (or
// edited no more). Only what differs from the snapshot before, so a pass
// over a fleet at rest notes nothing; with no snapshot before (lockstepd's
// first), all it knows, and the state store drops what it held already.
// `was` is `before` indexed by key (empty without one).
std::vector<StateStore::FleetCondition> FleetConditions(
    const FleetSnapshot* before, const std::unordered_map<std::string, const DatabaseStatus*>& was,
    const FleetSnapshot& after) {
  std::vector<StateStore::FleetCondition> out;
  for (const DatabaseStatus& d : after.databases) {
    const SchemaState now = d.schema.state;
    if (now == SchemaState::kUnknown) continue;  // not judged (yet): nothing said
    auto it = was.find(d.key());
    if (it != was.end() && it->second->schema.state == now) continue;
    const bool drift = now == SchemaState::kDrift;
    out.push_back({"schema_drift", d.environment, d.name, "", drift, drift ? d.schema.reason : ""});
  }
  auto edited = [](const FleetSnapshot& s) {
    std::map<std::string, std::vector<std::string>> databases_by_revision;
    for (const DatabaseStatus& d : s.databases) {
      for (const ChangedRevision& c : d.changed_revisions) {
        if (!c.cosmetic) databases_by_revision[c.revision].push_back(d.key());
      }
    }
    return databases_by_revision;
  };
  const std::map<std::string, std::vector<std::string>> now_edited = edited(after);
  const std::map<std::string, std::vector<std::string>> then_edited =
      before != nullptr ? edited(*before) : std::map<std::string, std::vector<std::string>>();
  for (const auto& [revision, databases] : now_edited) {
    if (before != nullptr && then_edited.count(revision)) continue;
    const size_t shown = std::min<size_t>(databases.size(), 3);
    out.push_back(
        {"checksum_changed", "", "", revision, true,
         absl::StrCat("the file of revision ", revision, " changed after ", databases.size(),
                      databases.size() == 1 ? " database" : " databases", " applied it (",
                      absl::StrJoin(databases.begin(), databases.begin() + shown, ", "),
                      databases.size() > shown ? ", ..." : "",
                      "); `lockstep validate` shows what changed")});
  }
  for (const auto& [revision, databases] : then_edited) {
    if (!now_edited.count(revision))
      out.push_back({"checksum_changed", "", "", revision, false, ""});
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Create(const std::string& config_path,
                                                       std::shared_ptr<spdlog::logger> log) {
  absl::StatusOr<config::Inventory> inv = config::LoadInventory(config_path);
  if (!inv.ok()) return inv.status();
  std::unique_ptr<Daemon> d(new Daemon());
  d->config_path_ = config_path;
  d->log_ = std::move(log);
  auto inventory = std::make_shared<const config::Inventory>(*std::move(inv));

  // One lockstepd per state store, before anything reads it: a second one
  // would settle the first one's running steps (kill its Alembic, restore
  // its databases) as if it had crashed.
  absl::StatusOr<std::unique_ptr<SqliteFileLock>> state_lock =
      SqliteFileLock::Acquire(inventory->server.state, SqliteFileLock::IfMissing::kCreate);
  if (!state_lock.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the state store ", inventory->server.state, " is in use: ", state_lock.status().message(),
        "; one lockstepd per state store (stop the other one, or point server.state elsewhere)"));
  }
  d->state_lock_ = *std::move(state_lock);
  absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(inventory->server.state);
  if (!store.ok()) return store.status();
  d->store_ = *std::move(store);

  d->drivers_ = MakeDrivers(ReaderOptionsFor(inventory->server));
  absl::StatusOr<std::unique_ptr<Reconciler>> reconciler =
      Reconciler::Create(inventory, d->drivers_, d->store_.get());
  if (!reconciler.ok()) return reconciler.status();
  d->reconciler_ = *std::move(reconciler);
  // Expected schemas: the project's Alembic on an empty shadow database.
  auto shadow = std::make_shared<ShadowSchemas>(d->drivers_.get());
  d->reconciler_->SetExpectedSchemas(
      [shadow, drivers = d->drivers_](const config::Inventory& inv, config::Dialect dialect,
                                      const std::vector<std::string>& revisions,
                                      const SchemaFilter& filter) {
        return shadow->Build(inv, dialect, revisions, filter);
      });

  d->registry_ = std::make_shared<prometheus::Registry>();
  // lockstep_build_info{version, commit} 1: which lockstepd answers.
  prometheus::BuildGauge()
      .Name("lockstep_build_info")
      .Help("The lockstepd serving: its version and the commit it was built from (always 1)")
      .Register(*d->registry_)
      .Add({{"version", kVersion}, {"commit", kCommit}})
      .Set(1);
  d->metrics_ = std::make_unique<FleetMetrics>(d->registry_.get());
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics_server =
      MetricsServer::Start(inventory->server.metrics_listen, d->registry_, inventory->server.tls);
  if (!metrics_server.ok()) return metrics_server.status();
  d->metrics_server_ = *std::move(metrics_server);

  Daemon* self = d.get();
  auto previous = std::make_shared<std::shared_ptr<const FleetSnapshot>>();
  d->reconciler_->OnRefresh([self, previous](const FleetSnapshot& s) {
    self->metrics_->Update(s, FleetMetrics::ParsePerDatabase(
                                  self->reconciler_->inventory()->server.metrics_per_database));
    // The snapshot before, indexed once for both (100,000 databases).
    const FleetSnapshot* before = previous->get();
    SnapshotIndex was;
    if (before != nullptr) was = before->Index();
    if (before != nullptr) self->LogChanges(was, s);
    self->NoteFleetConditions(before, was, s);
    *previous = self->reconciler_->Snapshot();
  });

  d->rollout_metrics_ = std::make_unique<RolloutMetrics>(d->registry_.get());
  d->rollout_metrics_->KnowEnvironments(inventory->EnvironmentNames());
  RolloutHooks hooks;
  d->notifier_ = std::make_unique<Notifier>(d->store_.get(), d->log_, d->registry_.get());
  d->notifier_->Configure(inventory->notify);
  hooks.on_event = [self](const Rollout& r, const RolloutEvent& e) {
    self->LogEvent(r, e);
    if (e.kind != EventKind::kOutput) self->notifier_->Wake();
  };
  hooks.on_step_finished = [self](const RolloutStep& s, absl::Duration took) {
    self->rollout_metrics_->StepFinished(s, took);
  };
  hooks.on_backup = [self](const Backup& b) { self->rollout_metrics_->BackupTaken(b); };
  hooks.on_rollout_finished = [self](const Rollout& r) { self->rollout_metrics_->RolloutFinished(r); };
  hooks.on_restore = [self](const RestoreResult& r) {
    const std::string safety =
        r.safety.id == 0
            ? "no safety backup: its file was gone"
            : absl::StrCat("safety backup ", r.safety.id, " holds what it held before (",
                           absl::StrJoin(r.safety.revisions, ","), ")");
    self->log_->warn("{}/{} restored from backup {} by {}{}; {}", r.restored.environment,
                     r.restored.database, r.restored.id, r.restored.restored_by,
                     r.changed ? " (confirmed: it had changed)" : "", safety);
  };
  hooks.on_gauges = [self](int active, int awaiting, int window) {
    self->rollout_metrics_->Gauges(active, awaiting, window);
  };
  hooks.on_store = [self](bool ok, const std::string& why) {
    if (ok) {
      self->log_->info("the state store takes writes again; rollouts may start");
    } else {
      self->log_->error("{}; rollouts are halted and none starts until it can", why);
    }
    std::lock_guard<std::mutex> lock(self->health_mu_);
    self->store_ok_ = ok;
    if (self->server_ && self->server_->GetHealthCheckService() != nullptr) {
      self->server_->GetHealthCheckService()->SetServingStatus(kRolloutsHealth, ok);
    }
  };
  d->engine_ = std::make_unique<RolloutEngine>(d->reconciler_, d->store_.get(),
                                               d->drivers_, std::move(hooks));
  absl::Status recovered = d->engine_->Recover();
  if (!recovered.ok()) return recovered;
  d->engine_->Prewarm([self](const absl::Status& s, absl::Duration took) {
    if (s.ok()) {
      self->log_->info("warm Alembic runner ready in {}", absl::FormatDuration(took));
    } else {
      self->log_->error("warm Alembic runner: {}", std::string(s.message()));
    }
  });

  d->service_ = std::make_unique<LockstepService>(d->reconciler_, d->store_.get(), d->engine_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second lockstepd on the same
  // address would start and take half of the requests. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // No request needs more (CheckRequestBounds bounds each field further).
  builder.SetMaxReceiveMessageSize(1 << 20);
  int port = 0;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentials(inventory->server);
  if (!credentials.ok()) return credentials.status();
  if (inventory->server.insecure && !inventory->server.tls) {
    d->log_->warn(
        "server.insecure: true: gRPC on {} is plaintext and open to anyone who reaches "
        "it",
        inventory->server.listen);
  }
  builder.AddListeningPort(inventory->server.listen, *credentials, &port);
  builder.RegisterService(d->service_.get());
  // The audit log sees every call's request and result (audit_interceptor.h).
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> audit;
  audit.push_back(std::make_unique<AuditInterceptorFactory>(d->service_.get()));
  builder.experimental().SetInterceptorCreators(std::move(audit));
  {
    // on_store (runner threads) reads server_ under health_mu_, and may
    // have run already (recovery): the health starts as it left store_ok_.
    std::lock_guard<std::mutex> lock(d->health_mu_);
    d->server_ = builder.BuildAndStart();
    if (d->server_) {
      d->server_->GetHealthCheckService()->SetServingStatus(kRolloutsHealth, d->store_ok_);
    }
  }
  if (!d->server_ || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC on ", inventory->server.listen,
        " (in use by another process, e.g. a second lockstepd, or not an address of this host)"));
  }
  // The address as bound: with port 0 the system chose one.
  const std::string listen =
      absl::StrCat(inventory->server.listen.substr(0, inventory->server.listen.rfind(':')), ":",
                   port);
  d->log_->info("lockstepd serving gRPC on {} and metrics on {}; inventory {}: {} environments, "
                "{} databases (+ discovered), state {}",
                listen, inventory->server.metrics_listen, config_path,
                inventory->environments.size(), CountDatabases(*inventory), inventory->server.state);
  return d;
}

Daemon::~Daemon() {
  Shutdown();
  if (poller_.joinable()) poller_.join();
  if (schema_poller_.joinable()) schema_poller_.join();
  // A Refresh RPC's pass may still run on its own thread: wait for it, and
  // keep later ones off the store, which is destroyed after this.
  if (reconciler_) reconciler_->Close();
}

void Daemon::Run() {
  poller_ = std::thread([this] { PollLoop(); });
  schema_poller_ = std::thread([this] { SchemaLoop(); });
  server_->Wait();
  if (poller_.joinable()) poller_.join();
  if (schema_poller_.joinable()) schema_poller_.join();
}

void Daemon::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  // Rollouts first: running steps stop as if lockstepd had crashed (the next
  // start settles them), and WatchRollout streams end at once.
  if (engine_) engine_->Stop();
  if (service_) service_->StopWatches();
  // A pass over a large fleet ends now, not when its last read does.
  if (reconciler_) reconciler_->Interrupt();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

absl::Status Daemon::Reload() {
  absl::StatusOr<config::Inventory> inv = config::LoadInventory(config_path_);
  if (!inv.ok()) {
    log_->error("reload of {} rejected; keeping the running configuration:\n{}", config_path_,
                std::string(inv.status().message()));
    return inv.status();
  }
  std::shared_ptr<const config::Inventory> old = reconciler_->inventory();
  if (inv->server.listen != old->server.listen || inv->server.state != old->server.state ||
      inv->server.metrics_listen != old->server.metrics_listen) {
    log_->warn("reload: server.listen, server.metrics_listen and server.state take effect only "
               "after a restart");
  }
  if (inv->server.lock_wait != old->server.lock_wait) {
    log_->warn("reload: server.lock_wait takes effect only after a restart");
  }
  log_->info("reloaded {}: {} environments, {} databases (+ discovered)", config_path_,
             inv->environments.size(), CountDatabases(*inv));
  rollout_metrics_->KnowEnvironments(inv->EnvironmentNames());
  notifier_->Configure(inv->notify);
  reconciler_->SetInventory(std::make_shared<const config::Inventory>(*std::move(inv)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    refresh_requested_ = true;  // check with the new inventory now
  }
  wake_.notify_all();
  return absl::OkStatus();
}

void Daemon::PollLoop() {
  while (true) {
    // Passes start every poll_interval (a pass longer than that is followed
    // at once): a slow pass under load does not push every later one back.
    const auto started = std::chrono::steady_clock::now();
    absl::Status s = reconciler_->RefreshVersions();
    {
      std::lock_guard<std::mutex> lock(mu_);
      schemas_due_ = true;
    }
    wake_.notify_all();
    std::shared_ptr<const FleetSnapshot> snap = reconciler_->Snapshot();
    std::map<std::string, int> by_state;
    for (const DatabaseStatus& d : snap->databases) ++by_state[std::string(NameOf(d.state))];
    std::vector<std::string> counts;
    for (const auto& [k, v] : by_state) counts.push_back(absl::StrCat(k, "=", v));
    if (s.ok()) {
      // A fleet at rest logs at debug; a change of counts (or the first
      // pass, or the first after a failed one) at info.
      std::string summary =
          absl::StrCat(snap->databases.size(), " databases: ", absl::StrJoin(counts, " "));
      const auto level =
          summary == last_refresh_summary_ ? spdlog::level::debug : spdlog::level::info;
      log_->log(level, "refreshed {} databases in {}: {}", snap->databases.size(),
                absl::FormatDuration(snap->refresh_duration), absl::StrJoin(counts, " "));
      last_refresh_summary_ = std::move(summary);
    } else {
      last_refresh_summary_.clear();
      log_->error("refresh: {}", std::string(s.message()));
    }
    if (snap->graph.broken) log_->error("revision scripts do not load (using the last good graph): {}", snap->graph.error);
    absl::Status store = engine_->CheckStore();  // on_store logs and sets health
    (void)store;
    std::unique_lock<std::mutex> lock(mu_);
    absl::Duration interval = reconciler_->inventory()->server.poll_interval;
    wake_.wait_until(lock, started + absl::ToChronoMilliseconds(interval),
                     [this] { return stopping_ || refresh_requested_; });
    if (stopping_) return;
    refresh_requested_ = false;
  }
}

void Daemon::SchemaLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || schemas_due_; });
      if (stopping_) return;
      schemas_due_ = false;
    }
    const absl::Time started = absl::Now();
    absl::Status s = reconciler_->RefreshSchemas();
    if (s.ok()) {
      log_->debug("schema pass in {}", absl::FormatDuration(absl::Now() - started));
    } else if (!absl::IsUnavailable(s)) {
      log_->error("schema pass: {}", std::string(s.message()));
    }
  }
}

void Daemon::LogEvent(const Rollout& r, const RolloutEvent& e) {
  std::string where = e.database.empty() ? e.environment : absl::StrCat(e.environment, "/", e.database);
  if (e.kind == EventKind::kOutput) {
    log_->debug("rollout {} {}: {}", r.id, where, e.message);
  } else if (e.kind == EventKind::kStepFailed || e.kind == EventKind::kHalted ||
             e.kind == EventKind::kBackupFailed) {
    log_->error("rollout {} {} {}: {}", r.id, std::string(NameOf(e.kind)), where, e.message);
  } else {
    log_->info("rollout {} {}{}{}: {}", r.id, std::string(NameOf(e.kind)), where.empty() ? "" : " ",
               where, e.message);
  }
}

void Daemon::NoteFleetConditions(const FleetSnapshot* before, const SnapshotIndex& was,
                                 const FleetSnapshot& after) {
  std::vector<StateStore::FleetCondition> seen = FleetConditions(before, was, after);
  if (seen.empty()) return;
  absl::Status noted = store_->NoteFleetConditions(seen, absl::Now());
  if (!noted.ok()) {
    log_->error("fleet events for webhooks not recorded: {}", std::string(noted.message()));
    return;
  }
  notifier_->Wake();
}

void Daemon::LogChanges(const SnapshotIndex& was, const FleetSnapshot& after) {
  for (const DatabaseStatus& d : after.databases) {
    auto found = was.find(d.key());
    if (found == was.end()) continue;
    const DatabaseStatus* old = found->second;
    if (old->revisions != d.revisions) {
      log_->warn("{}: revisions changed from [{}] to [{}]", d.key(), absl::StrJoin(old->revisions, ","),
                 absl::StrJoin(d.revisions, ","));
    }
    if (old->state != d.state) {
      log_->info("{}: {} -> {} ({})", d.key(), std::string(NameOf(old->state)),
                 std::string(NameOf(d.state)), d.reason);
    }
  }
}

}  // namespace lockstep::daemon
