// A throwaway PostgreSQL server for C++ tests: a temp data folder, a free
// port, started with Debian's binaries (as the `postgres` user when run as
// root, since initdb refuses root) and removed on destruction.
#ifndef LOCKSTEP_TESTS_SUPPORT_POSTGRES_SERVER_H_
#define LOCKSTEP_TESTS_SUPPORT_POSTGRES_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lockstep::testing {

class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();

  int port() const { return port_; }
  // postgresql://user[:password]@127.0.0.1:PORT/db
  std::string Url(const std::string& db, const std::string& user = "postgres",
                  const std::string& password = "") const;
  // Runs SQL with psql as the superuser; returns its output (-At).
  absl::StatusOr<std::string> Psql(const std::string& sql, const std::string& db = "postgres") const;

 private:
  PostgresServer() = default;
  std::string dir_;
  std::string bindir_;
  int port_ = 0;
  bool as_root_ = false;
};

// Runs argv, returns exit code; stdout into *out when given.
int RunCommand(const std::vector<std::string>& argv, std::string* out = nullptr);
int FreePort();

}  // namespace lockstep::testing

#endif  // LOCKSTEP_TESTS_SUPPORT_POSTGRES_SERVER_H_
