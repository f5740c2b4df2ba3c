// One MySQL/MariaDB session over MariaDB Connector/C, for the MySQL driver
// (mysql_driver.cc) and its schema reader (mysql_schema.cc) only: the one
// place Connector/C is called. Errors come back as numbers and messages
// (servers name the user and host, never the password).
#ifndef LOCKSTEP_DAEMON_DRIVERS_MYSQL_CONNECTION_H_
#define LOCKSTEP_DAEMON_DRIVERS_MYSQL_CONNECTION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "config/database_url.h"

struct st_mysql;

namespace lockstep::daemon::mysql {

// A failed call: its error number (mysqld_error.h, errmsg.h) and message.
struct Error {
  unsigned code = 0;
  std::string message;
};

// Rows of a result, NULL as nullopt.
using Rows = std::vector<std::vector<std::optional<std::string>>>;

// `name` quoted as a MySQL identifier (`a``b`).
std::string Ident(absl::string_view name);

// One session. Not thread-safe: one owner at a time.
class Connection {
 public:
  Connection();
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects to `url`'s server with no default database (statements name
  // their tables in full): host and port, or ?unix_socket=; ?charset=
  // (default utf8mb4); ?ssl_ca=, ssl_cert=, ssl_key= (then TLS is required).
  // `read_timeout` bounds every network wait after that.
  bool Connect(const config::DatabaseUrl& url, absl::Duration connect_timeout,
               absl::Duration read_timeout, Error* error);
  // Runs `sql`; its rows into *rows when given.
  bool Query(const std::string& sql, Rows* rows, Error* error);
  // The first column of the first row; nullopt for NULL, no row, or an
  // error (then *error is set).
  std::optional<std::string> Scalar(const std::string& sql, Error* error);
  // `text` as a quoted string literal for this session's character set.
  std::string Quote(absl::string_view text);
  // The session's id (CONNECTION_ID()).
  unsigned long id() const;

 private:
  Error LastError() const;
  st_mysql* m_;
};

// Whether `code` says the session is gone (server restarted, KILL, timeout).
bool IsConnectionGone(unsigned code);

}  // namespace lockstep::daemon::mysql

#endif  // LOCKSTEP_DAEMON_DRIVERS_MYSQL_CONNECTION_H_
