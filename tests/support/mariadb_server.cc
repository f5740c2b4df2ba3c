#include "tests/support/mariadb_server.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/postgres_server.h"  // RunCommand, FreePort

namespace lockstep::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MariadbServer>> MariadbServer::Start() {
  if (!std::filesystem::exists("/usr/sbin/mariadbd")) {
    return absl::FailedPreconditionError(
        "MariaDB binaries not found (apt-get install mariadb-server mariadb-client)");
  }
  std::unique_ptr<MariadbServer> s(new MariadbServer());
  char tmpl[] = "/tmp/lockstep-mariadb-XXXXXX";
  s->dir_ = ::mkdtemp(tmpl);
  s->socket_ = s->dir_ + "/mysql.sock";
  s->port_ = FreePort();
  const bool as_root = ::geteuid() == 0;
  std::vector<std::string> user;
  if (as_root) {
    passwd* pw = ::getpwnam("mysql");
    if (pw == nullptr || ::chown(s->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::FailedPreconditionError("cannot hand the data folder to user mysql");
    }
    user = {"--user=mysql"};
  }
  // Its own tmpdir: a starting mariadbd removes the "#sql*" files it finds
  // in its tmpdir, those of another server starting beside it included.
  const std::string tmpdir = "--tmpdir=" + s->dir_;
  std::vector<std::string> install = {"mariadb-install-db",
                                      "--datadir=" + s->dir_ + "/data",
                                      tmpdir,
                                      "--auth-root-authentication-method=normal",
                                      "--skip-test-db",
                                      "--skip-name-resolve"};
  install.insert(install.end(), user.begin(), user.end());
  std::string out;
  if (RunCommand(install, &out) != 0)
    return absl::InternalError("mariadb-install-db failed: " + out);
  std::vector<std::string> argv = {"/usr/sbin/mariadbd",
                                   "--no-defaults",
                                   "--datadir=" + s->dir_ + "/data",
                                   tmpdir,
                                   "--socket=" + s->socket_,
                                   absl::StrCat("--port=", s->port_),
                                   "--bind-address=127.0.0.1",
                                   "--skip-name-resolve",
                                   "--skip-log-bin",
                                   "--log-error=" + s->dir_ + "/error.log",
                                   "--pid-file=" + s->dir_ + "/mysqld.pid",
                                   "--innodb-buffer-pool-size=32M",
                                   "--innodb-flush-log-at-trx-commit=0",
                                   "--innodb-doublewrite=0",
                                   "--performance-schema=OFF"};
  argv.insert(argv.end(), user.begin(), user.end());
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_WRONLY);  // its log is error.log
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  s->pid_ = pid;
  // Ready when root answers on the socket (about 1 s here).
  for (int i = 0; i < 300; ++i) {
    if (RunCommand(
            {"mariadb-admin", "--no-defaults", "--socket=" + s->socket_, "-uroot", "ping"}) == 0) {
      // The harness's own account over TCP, like PostgreSQL's trusted
      // superuser: root from 127.0.0.1 without a password.
      absl::StatusOr<std::string> made = s->Sql(
          "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
          "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;");
      if (!made.ok()) return made.status();
      return s;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      s->pid_ = 0;
      return absl::InternalError("mariadbd exited at start: " + Slurp(s->dir_ + "/error.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::InternalError("mariadbd did not answer within 30 s: " +
                             Slurp(s->dir_ + "/error.log"));
}

MariadbServer::~MariadbServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string MariadbServer::Url(const std::string& db, const std::string& user,
                               const std::string& password) const {
  return absl::StrCat("mysql+pymysql://", user, password.empty() ? "" : ":" + password,
                      "@127.0.0.1:", port_, "/", db);
}

absl::StatusOr<std::string> MariadbServer::Sql(const std::string& sql,
                                               const std::string& db) const {
  std::string out;
  std::vector<std::string> argv = {"mariadb",
                                   "--no-defaults",
                                   "--socket=" + socket_,
                                   "-uroot",
                                   "--batch",
                                   "--skip-column-names",
                                   "-e",
                                   sql};
  if (!db.empty()) argv.push_back(db);
  const int rc = RunCommand(argv, &out);
  if (rc != 0)
    return absl::InternalError(absl::StrCat("mariadb failed (", rc, "): ", sql, ": ", out));
  return out;
}

}  // namespace lockstep::testing
