#include "daemon/drivers/mysql_connection.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace lockstep::daemon::mysql {
namespace {

std::string OneLine(absl::string_view s) {
  return absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(s), {{"\n", " "}, {"\t", " "}});
}

}  // namespace

std::string Ident(absl::string_view name) {
  return absl::StrCat("`", absl::StrReplaceAll(name, {{"`", "``"}}), "`");
}

Connection::Connection() {
  static std::once_flag init;
  std::call_once(init, [] { mysql_library_init(0, nullptr, nullptr); });
  m_ = mysql_init(nullptr);
}

Connection::~Connection() {
  if (m_ != nullptr) mysql_close(m_);
}

bool Connection::Connect(const config::DatabaseUrl& url, absl::Duration connect_timeout,
                         absl::Duration read_timeout, Error* error) {
  if (m_ == nullptr) {
    *error = {CR_OUT_OF_MEMORY, "out of memory"};
    return false;
  }
  unsigned connect_s =
      static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(connect_timeout)));
  unsigned read_s = static_cast<unsigned>(
      std::clamp<int64_t>(absl::ToInt64Seconds(read_timeout), 1, 365 * 24 * 3600));
  mysql_options(m_, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
  mysql_options(m_, MYSQL_OPT_READ_TIMEOUT, &read_s);
  mysql_options(m_, MYSQL_OPT_WRITE_TIMEOUT, &read_s);
  auto q = [&](const char* key) -> const char* {
    auto it = url.query.find(key);
    return it == url.query.end() ? nullptr : it->second.c_str();
  };
  mysql_options(m_, MYSQL_SET_CHARSET_NAME, q("charset") ? q("charset") : "utf8mb4");
  if (q("ssl_ca")) mysql_options(m_, MYSQL_OPT_SSL_CA, q("ssl_ca"));
  if (q("ssl_cert")) mysql_options(m_, MYSQL_OPT_SSL_CERT, q("ssl_cert"));
  if (q("ssl_key")) mysql_options(m_, MYSQL_OPT_SSL_KEY, q("ssl_key"));
  if (q("ssl_ca") || q("ssl_cert")) {
    my_bool enforce = 1;
    mysql_options(m_, MYSQL_OPT_SSL_ENFORCE, &enforce);
  }
  const char* host = url.host.empty() ? "localhost" : url.host.c_str();
  if (!mysql_real_connect(m_, host, url.user.empty() ? nullptr : url.user.c_str(),
                          url.password ? url.password->c_str() : nullptr, nullptr,
                          static_cast<unsigned>(url.port), q("unix_socket"), 0)) {
    *error = LastError();
    return false;
  }
  return true;
}

bool Connection::Query(const std::string& sql, Rows* rows, Error* error) {
  if (mysql_real_query(m_, sql.data(), sql.size()) != 0) {
    *error = LastError();
    return false;
  }
  MYSQL_RES* res = mysql_store_result(m_);
  if (res == nullptr) {
    if (mysql_field_count(m_) != 0) {
      *error = LastError();
      return false;
    }
    return true;  // no result set (SET, DROP, ...)
  }
  const unsigned n = mysql_num_fields(res);
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* lengths = mysql_fetch_lengths(res);
    if (rows == nullptr) continue;
    std::vector<std::optional<std::string>> r;
    for (unsigned i = 0; i < n; ++i) {
      if (row[i] == nullptr) {
        r.push_back(std::nullopt);
      } else {
        r.emplace_back(std::string(row[i], lengths[i]));
      }
    }
    rows->push_back(std::move(r));
  }
  mysql_free_result(res);
  return true;
}

std::optional<std::string> Connection::Scalar(const std::string& sql, Error* error) {
  Rows rows;
  if (!Query(sql, &rows, error) || rows.empty() || rows[0].empty()) return std::nullopt;
  return rows[0][0];
}

std::string Connection::Quote(absl::string_view text) {
  std::string out(text.size() * 2 + 1, '\0');
  const unsigned long n = mysql_real_escape_string(m_, out.data(), text.data(), text.size());
  out.resize(n);
  return absl::StrCat("'", out, "'");
}

unsigned long Connection::id() const { return mysql_thread_id(m_); }

Error Connection::LastError() const { return {mysql_errno(m_), OneLine(mysql_error(m_))}; }

bool IsConnectionGone(unsigned code) {
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == ER_CONNECTION_KILLED ||
         code == ER_SERVER_SHUTDOWN;
}

}  // namespace lockstep::daemon::mysql
