// lockstepd: watches every database of an Alembic fleet.
//
//   lockstepd --config fleet.yaml [--log-format text|json]
//   lockstepd --check-config fleet.yaml
#include <malloc.h>
#include <signal.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_join.h"
#include "build_info.h"
#include "config/inventory.h"
#include "daemon/core/reconciler.h"
#include "daemon/daemon.h"
#include "daemon/model/utf8.h"
#include "daemon/rollout/alembic_entry.h"
#include "migrations/project.h"
#include "migrations/revision_error.h"

namespace {

constexpr char kUsage[] =
    "usage: lockstepd --config FILE [--log-format text|json]\n"
    "       lockstepd --check-config FILE\n"
    "       lockstepd --version\n";

// `%*` in a pattern: the message, escaped for a JSON string.
class JsonMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    // nlohmann's encoder, without the quotes the pattern already has; bytes
    // that are not UTF-8 become U+FFFD, so every line stays valid JSON.
    std::string quoted = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(std::string_view(quoted).substr(1, quoted.size() - 2));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessage>();
  }
};

// `%*` in the text pattern: the message, LogSafe.
class TextMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string safe = lockstep::daemon::LogSafe(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(safe.data(), safe.data() + safe.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextMessage>();
  }
};

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& format) {
  auto log = spdlog::stderr_color_mt("lockstepd");
  if (format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%f%z","level":"%l","msg":"%*"})");
    log->set_formatter(std::move(f));
  } else {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<TextMessage>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %*");
    log->set_formatter(std::move(f));
  }
  log->flush_on(spdlog::level::info);
  return log;
}

int CheckConfig(const std::string& path) {
  absl::StatusOr<lockstep::config::Inventory> inv = lockstep::config::LoadInventory(path);
  if (!inv.ok()) {
    std::cerr << inv.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<lockstep::migrations::Project> project =
      lockstep::migrations::Project::Load(lockstep::daemon::ProjectSourceOf(*inv));
  if (!project.ok()) {
    std::cerr << path << ": project: " << lockstep::migrations::CommandErrorMessage(project.status())
              << "\n";
    return 1;
  }
  std::cout << path << ": ok\n";
  std::cout << "  project: " << project->location().script_dir << " ("
            << project->graph().size() << " revisions, heads "
            << absl::StrJoin(project->graph().Ids(project->graph().heads()), ", ") << ")\n";
  std::cout << "  listen: " << inv->server.listen << ", metrics: " << inv->server.metrics_listen
            << ", state: " << inv->server.state << "\n";
  for (const auto& e : inv->environments) {
    std::cout << "  " << e.name << (e.after.empty() ? "" : " (after " + e.after + ")") << ": "
              << e.databases.size() << (e.databases.size() == 1 ? " database" : " databases");
    if (!e.discover.empty()) {
      std::cout << " + " << e.discover.size()
                << (e.discover.size() == 1 ? " discover rule" : " discover rules");
    }
    if (e.approval_required) std::cout << ", approval required";
    std::cout << "\n";
  }
  // Does env.py reach the database a step is for? (README: "Your env.py")
  if (!inv->project.alembic_ini.empty() &&
      !lockstep::daemon::CheckEnvPy(*inv, project->graph(), std::cout)) {
    std::cerr
        << path << ": env.py connects to another database than the one lockstep "
        << "migrates, or Alembic cannot run it (above); see docs/rollouts.md, 'Your env.py'\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // SQLite's allocation statistics, which lockstepd never reads, take one
  // process-wide mutex on every allocation of every connection: with many
  // threads opening tenant files at once they serialised on it. It has to
  // be said before SQLite's first use.
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  // glibc gives each thread that allocates at once an arena of its own (up
  // to 8 per core), and memory freed into one is not reused by another:
  // at 20,000 databases, after a dozen passes and scrapes, 211 MB with the
  // default against 148 MB with 4 arenas on 2 cores, the first pass as fast.
  // MALLOC_ARENA_MAX, when set, is the operator's choice.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) {
    mallopt(M_ARENA_MAX, static_cast<int>(std::max(4u, 2 * std::thread::hardware_concurrency())));
  }
  std::string config, check, log_format;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if ((a == "--config" || a == "-c") && value(&config)) continue;
    if (a == "--check-config" && value(&check)) continue;
    if (a == "--log-format" && value(&log_format)) continue;
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--version") {
      std::cout << "lockstepd " << lockstep::kVersion << " (commit " << lockstep::kCommit << ")\n";
      return 0;
    }
    std::cerr << "lockstepd: unexpected argument '" << a << "'\n" << kUsage;
    return 2;
  }
  if (!check.empty()) return CheckConfig(check);
  if (config.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  if (!log_format.empty() && log_format != "text" && log_format != "json") {
    std::cerr << "lockstepd: --log-format takes text or json\n";
    return 2;
  }
  // Signals go to one thread that waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (log_format.empty()) {
    absl::StatusOr<lockstep::config::Inventory> inv = lockstep::config::LoadInventory(config);
    log_format = inv.ok() ? inv->server.log_format : "text";
  }
  std::shared_ptr<spdlog::logger> log = MakeLogger(log_format);
  absl::StatusOr<std::unique_ptr<lockstep::daemon::Daemon>> daemon =
      lockstep::daemon::Daemon::Create(config, log);
  if (!daemon.ok()) {
    log->critical("cannot start: {}", std::string(daemon.status().message()));
    return 1;
  }
  lockstep::daemon::Daemon* d = daemon->get();
  std::thread signal_thread([d, log, signals] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        log->info("SIGHUP: reloading the configuration");
        (void)d->Reload();
        continue;
      }
      log->info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      d->Shutdown();
      return;
    }
  });
  d->Run();
  signal_thread.join();
  daemon->reset();
  log->info("stopped");
  return 0;
}
