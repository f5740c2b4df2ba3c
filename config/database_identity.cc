#include "config/database_identity.h"

#include <sys/stat.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "config/inventory.h"

namespace lockstep::config {
namespace {

namespace fs = std::filesystem;

std::string Canonical(const std::string& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  return ec ? path : canonical.string();
}

// "dev:ino" of an existing file, else its canonical path.
std::string FileIdentity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return absl::StrCat("inode ", st.st_dev, ":", st.st_ino);
  return Canonical(path);
}

bool SameFile(const std::string& a, const std::string& b) {
  return FileIdentity(a) == FileIdentity(b);
}

}  // namespace

std::string DatabaseIdentity(const DatabaseUrl& url, const std::string& version_table_schema,
                             const std::string& version_table) {
  std::string where;
  if (url.dialect == Dialect::kSqlite) {
    if (url.database == ":memory:" || url.database.empty()) return "";
    where = FileIdentity(url.database);
  } else {
    where = absl::StrCat(url.host, ":", url.port, "/", url.database);
  }
  return absl::StrCat(static_cast<int>(url.dialect), "|", where, "|", version_table_schema, ".",
                      version_table);
}

std::string OwnFileReason(const ServerConfig& server, const std::string& path) {
  if (path.empty() || path == ":memory:") return "";
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    if (SameFile(path, server.state + suffix)) {
      return absl::StrCat("it is lockstepd's state store", suffix, " (server.state ", server.state,
                          ")");
    }
  }
  if (!server.backup_dir.empty()) {
    const std::string dir = Canonical(server.backup_dir);
    const std::string file = Canonical(path);
    if (file == dir || absl::StartsWith(file, dir + "/")) {
      return absl::StrCat("it is in lockstepd's backup folder (server.backup_dir ",
                          server.backup_dir, ")");
    }
  }
  return "";
}

}  // namespace lockstep::config
