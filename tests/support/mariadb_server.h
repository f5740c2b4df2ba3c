// A throwaway MariaDB server for C++ tests: `mariadb-install-db` into a temp
// folder, `mariadbd` on a free port and its own socket (as the `mysql` user
// when run as root), killed and removed on destruction. Debian's
// mariadb-server package provides the binaries; the service Debian starts
// is not used.
#ifndef LOCKSTEP_TESTS_SUPPORT_MARIADB_SERVER_H_
#define LOCKSTEP_TESTS_SUPPORT_MARIADB_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lockstep::testing {

class MariadbServer {
 public:
  static absl::StatusOr<std::unique_ptr<MariadbServer>> Start();
  ~MariadbServer();
  MariadbServer(const MariadbServer&) = delete;
  MariadbServer& operator=(const MariadbServer&) = delete;

  int port() const { return port_; }
  const std::string& socket() const { return socket_; }
  // mysql+pymysql://user[:password]@127.0.0.1:PORT/db
  std::string Url(const std::string& db, const std::string& user = "root",
                  const std::string& password = "") const;
  // Runs SQL with the `mariadb` client as root over the socket; returns its
  // output (tab-separated, no column names).
  absl::StatusOr<std::string> Sql(const std::string& sql, const std::string& db = "") const;

 private:
  MariadbServer() = default;
  std::string dir_;
  std::string socket_;
  int port_ = 0;
  pid_t pid_ = 0;
};

}  // namespace lockstep::testing

#endif  // LOCKSTEP_TESTS_SUPPORT_MARIADB_SERVER_H_
