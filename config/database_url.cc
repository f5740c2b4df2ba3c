#include "config/database_url.h"

#include <cctype>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lockstep::config {
namespace {

std::optional<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
    i += 2;
  }
  return out;
}

std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Quotes a libpq conninfo value.
std::string ConninfoValue(absl::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

}  // namespace

absl::string_view DialectName(Dialect d) {
  switch (d) {
    case Dialect::kSqlite: return "sqlite";
    case Dialect::kPostgresql: return "postgresql";
    case Dialect::kMysql: return "mysql";
  }
  return "unknown";
}

namespace {
absl::StatusOr<DatabaseUrl> ParseUrlParts(absl::string_view url, absl::string_view base_dir);
}  // namespace

// A password in the query (`?password=...`, as libpq and SQLAlchemy accept)
// is a password like the one in the userinfo: taken out of the query, so it
// is redacted everywhere and reaches Alembic and pg_dump by the environment
// only, never in argv.
absl::StatusOr<DatabaseUrl> ParseDatabaseUrl(absl::string_view url, absl::string_view base_dir) {
  absl::StatusOr<DatabaseUrl> out = ParseUrlParts(url, base_dir);
  if (!out.ok()) return out;
  auto it = out->query.find("password");
  if (it == out->query.end()) return out;
  if (out->password.has_value()) {
    return absl::InvalidArgumentError(
        "the password is given twice (in the userinfo and as ?password=); give it once");
  }
  std::optional<std::string> decoded = PercentDecode(it->second);
  if (!decoded) return absl::InvalidArgumentError("bad percent-encoding in the password");
  out->password = *decoded;
  out->query.erase(it);
  return out;
}

namespace {
absl::StatusOr<DatabaseUrl> ParseUrlParts(absl::string_view url, absl::string_view base_dir) {
  DatabaseUrl out;
  size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "not a database URL (expected dialect://..., e.g. sqlite:///app.db or "
        "postgresql://user@host/db)");
  }
  absl::string_view scheme = url.substr(0, scheme_end);
  absl::string_view dialect = scheme;
  size_t plus = scheme.find('+');
  if (plus != absl::string_view::npos) {
    dialect = scheme.substr(0, plus);
    out.driver = std::string(scheme.substr(plus + 1));
  }
  if (dialect == "sqlite") {
    out.dialect = Dialect::kSqlite;
  } else if (dialect == "postgresql" || dialect == "postgres") {
    out.dialect = Dialect::kPostgresql;
  } else if (dialect == "mysql" || dialect == "mariadb") {
    out.dialect = Dialect::kMysql;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported database dialect '", dialect,
                     "' (lockstep reads sqlite, postgresql and mysql/mariadb)"));
  }
  absl::string_view rest = url.substr(scheme_end + 3);
  absl::string_view query;
  size_t q = rest.find('?');
  if (q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    out.query[p.first] = p.second;
  }
  if (out.dialect == Dialect::kSqlite) {
    // sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"; sqlite:// -> memory.
    if (rest.empty() || rest == "/") {
      out.database = ":memory:";
      return out;
    }
    if (rest[0] != '/') {
      return absl::InvalidArgumentError(
          "SQLite URLs have no host: use sqlite:///relative.db or sqlite:////absolute.db");
    }
    std::string path(rest.substr(1));
    if (path.empty() || path == ":memory:") {
      out.database = ":memory:";
    } else if (path[0] == '/' || base_dir.empty()) {
      out.database = path;
    } else {
      out.database =
          (std::filesystem::path(std::string(base_dir)) / path).lexically_normal().string();
    }
    return out;
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) {
    std::optional<std::string> db = PercentDecode(rest.substr(slash + 1));
    if (!db) return absl::InvalidArgumentError("bad percent-encoding in the database name");
    out.database = *db;
  }
  size_t at = authority.rfind('@');
  if (at != absl::string_view::npos) {
    absl::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    std::optional<std::string> user = PercentDecode(userinfo.substr(0, colon));
    if (!user) return absl::InvalidArgumentError("bad percent-encoding in the user name");
    out.user = *user;
    if (colon != absl::string_view::npos) {
      std::optional<std::string> pw = PercentDecode(userinfo.substr(colon + 1));
      if (!pw) return absl::InvalidArgumentError("bad percent-encoding in the password");
      out.password = *pw;
    }
  }
  absl::string_view host = authority;
  if (!host.empty() && host[0] == '[') {  // [::1]:5432
    size_t close = host.find(']');
    if (close == absl::string_view::npos) return absl::InvalidArgumentError("unclosed '[' in host");
    out.host = std::string(host.substr(1, close - 1));
    host = host.substr(close + 1);
    if (absl::ConsumePrefix(&host, ":") && !absl::SimpleAtoi(host, &out.port)) {
      return absl::InvalidArgumentError(absl::StrCat("bad port '", host, "'"));
    }
  } else {
    size_t colon = host.rfind(':');
    if (colon != absl::string_view::npos) {
      absl::string_view port = host.substr(colon + 1);
      if (!absl::SimpleAtoi(port, &out.port) || out.port <= 0 || out.port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("bad port '", port, "'"));
      }
      host = host.substr(0, colon);
    }
    out.host = std::string(host);
  }
  if (out.database.empty()) {
    return absl::InvalidArgumentError("the URL names no database (…/dbname)");
  }
  return out;
}
}  // namespace

std::string DatabaseUrl::Redacted() const {
  std::string scheme(DialectName(dialect));
  if (!driver.empty()) absl::StrAppend(&scheme, "+", driver);
  if (dialect == Dialect::kSqlite) {
    return absl::StrCat(scheme, ":///", database == ":memory:" ? "" : database);
  }
  std::string out = absl::StrCat(scheme, "://");
  if (!user.empty() || password.has_value()) {
    absl::StrAppend(&out, PercentEncode(user), password.has_value() ? ":***" : "", "@");
  }
  absl::StrAppend(&out, host.find(':') != std::string::npos ? "[" + host + "]" : host);
  if (port != 0) absl::StrAppend(&out, ":", port);
  absl::StrAppend(&out, "/", database);
  bool first = true;
  for (const auto& [k, v] : query) {
    absl::StrAppend(&out, first ? "?" : "&", k, "=", v);
    first = false;
  }
  return out;
}

std::string DatabaseUrl::LibpqConninfo() const {
  std::string out;
  auto add = [&](absl::string_view k, absl::string_view v) {
    if (v.empty()) return;
    absl::StrAppend(&out, out.empty() ? "" : " ", k, "=", ConninfoValue(v));
  };
  add("host", host);
  if (port != 0) add("port", std::to_string(port));
  add("dbname", database);
  add("user", user);
  if (password.has_value()) add("password", *password);
  for (const auto& [k, v] : query) add(k, v);
  return out;
}

std::string DatabaseUrl::ToSqlAlchemy() const {
  if (dialect == Dialect::kSqlite) return absl::StrCat("sqlite:///", database);
  // MySQL keeps its driver: SQLAlchemy's default for mysql:// is MySQLdb,
  // which a project on PyMySQL does not have.
  std::string out =
      absl::StrCat(DialectName(dialect),
                   dialect == Dialect::kMysql && !driver.empty() ? "+" + driver : "", "://");
  if (!user.empty() || password.has_value()) {
    absl::StrAppend(&out, PercentEncode(user));
    if (password.has_value()) absl::StrAppend(&out, ":", PercentEncode(*password));
    absl::StrAppend(&out, "@");
  }
  absl::StrAppend(&out, host.find(':') != std::string::npos ? "[" + host + "]" : host);
  if (port != 0) absl::StrAppend(&out, ":", port);
  absl::StrAppend(&out, "/", PercentEncode(database));
  bool first = true;
  for (const auto& [k, v] : query) {
    absl::StrAppend(&out, first ? "?" : "&", k, "=", v);
    first = false;
  }
  return out;
}

}  // namespace lockstep::config
