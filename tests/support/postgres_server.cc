#include "tests/support/postgres_server.h"

#include <arpa/inet.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lockstep::testing {

// A port nothing listens on, from below the kernel's ephemeral range
// (32768-60999): a port from bind(0) is an ephemeral one, which an outgoing
// connection of a test running beside this one may take first.
int FreePort() {
  std::random_device seed;
  std::mt19937 pick(seed());
  std::uniform_int_distribution<int> ports(15000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = ports(pick);
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(s);
    if (free) return port;
  }
  return 0;
}

int RunCommand(const std::vector<std::string>& argv, std::string* out) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    if (out == nullptr) ::dup2(pipefd[1], 2);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string buf;
  char chunk[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], chunk, sizeof chunk)) > 0) buf.append(chunk, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (out) *out = buf;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  glob_t g;
  if (::glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, nullptr, &g) != 0 || g.gl_pathc == 0) {
    return absl::FailedPreconditionError("PostgreSQL binaries not found (apt-get install postgresql)");
  }
  s->bindir_ = std::filesystem::path(g.gl_pathv[g.gl_pathc - 1]).parent_path();
  ::globfree(&g);
  char tmpl[] = "/tmp/lockstep-pg-XXXXXX";
  s->dir_ = ::mkdtemp(tmpl);
  s->port_ = FreePort();
  s->as_root_ = ::geteuid() == 0;
  auto as_pg = [&](std::vector<std::string> argv) {
    if (s->as_root_) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
    return argv;
  };
  if (s->as_root_) {
    passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr || ::chown(s->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::FailedPreconditionError("cannot hand the data folder to user postgres");
    }
  }
  std::string out;
  if (RunCommand(as_pg({s->bindir_ + "/initdb", "-D", s->dir_ + "/data", "-A", "trust", "-U",
                        "postgres", "--no-sync"}),
                 &out) != 0) {
    return absl::InternalError("initdb failed: " + out);
  }
  // Every role a test creates proves its password (scram-sha-256) over TCP;
  // only the harness's superuser is trusted (tests/support/pgserver.py: HBA).
  std::ofstream(s->dir_ + "/data/pg_hba.conf", std::ios::trunc)
      << "local all all trust\n"
         "host all postgres 127.0.0.1/32 trust\n"
         "host all all 127.0.0.1/32 scram-sha-256\n";
  std::string opts = absl::StrCat("-p ", s->port_, " -k ", s->dir_,
                                  " -c listen_addresses=127.0.0.1 -c fsync=off");
  if (RunCommand(as_pg({s->bindir_ + "/pg_ctl", "-D", s->dir_ + "/data", "-w", "-l",
                        s->dir_ + "/log", "-o", opts, "start"}),
                 &out) != 0) {
    return absl::InternalError("pg_ctl start failed: " + out);
  }
  return s;
}

PostgresServer::~PostgresServer() {
  std::vector<std::string> argv = {bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate",
                                   "stop"};
  if (as_root_) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
  std::string out;
  RunCommand(argv, &out);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PostgresServer::Url(const std::string& db, const std::string& user,
                                const std::string& password) const {
  return absl::StrCat("postgresql://", user, password.empty() ? "" : ":" + password,
                      "@127.0.0.1:", port_, "/", db);
}

absl::StatusOr<std::string> PostgresServer::Psql(const std::string& sql,
                                                 const std::string& db) const {
  std::string out;
  int rc = RunCommand({bindir_ + "/psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p",
                       std::to_string(port_), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                       "-c", sql},
                      &out);
  if (rc != 0) return absl::InternalError(absl::StrCat("psql failed (", rc, "): ", sql));
  return out;
}

}  // namespace lockstep::testing
