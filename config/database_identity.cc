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

}  // namespace

std::string DatabaseIdentity(const DatabaseUrl& url, const std::string& version_table_schema,
                             const std::string& version_table) {
  std::string where;
  if (url.dialect == Dialect::kSqlite) {
    if (url.database == ":memory:" || url.database.empty()) return "";
    where = FileIdentity(url.database);
  } else if (url.dialect == Dialect::kMysql) {
    // A MySQL "schema" is a database: version_table_schema names the
    // database that holds the version table.
    auto socket = url.query.find("unix_socket");
    where =
        absl::StrCat(url.host, ":", url.port, socket == url.query.end() ? "" : ":" + socket->second,
                     "/", version_table_schema.empty() ? url.database : version_table_schema);
    return absl::StrCat(static_cast<int>(url.dialect), "|", where, "|", version_table);
  } else {
    where = absl::StrCat(url.host, ":", url.port, "/", url.database);
  }
  return absl::StrCat(static_cast<int>(url.dialect), "|", where, "|", version_table_schema, ".",
                      version_table);
}

OwnFiles::OwnFiles(const ServerConfig& server)
    : state_(server.state) {
  for (auto [key, folder] : {std::pair{"backup_dir", &server.backup_dir},
                             std::pair{"output_dir", &server.output_dir}}) {
    if (!folder->empty()) folders_.push_back({key, *folder, Canonical(*folder)});
  }
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    state_files_.emplace_back(FileIdentity(server.state + suffix), suffix);
  }
}

std::string OwnFiles::Reason(const std::string& path) {
  if (path.empty() || path == ":memory:") return "";
  const std::string identity = FileIdentity(path);
  for (const auto& [own, suffix] : state_files_) {
    if (identity == own) {
      return absl::StrCat("it is lockstepd's state store", suffix, " (server.state ", state_, ")");
    }
  }
  if (folders_.empty()) return "";
  // The file's folder with links resolved, once per folder, then its name.
  const fs::path p(path);
  const std::string dir = p.parent_path().string();
  auto it = real_dirs_.find(dir);
  if (it == real_dirs_.end()) it = real_dirs_.emplace(dir, Canonical(dir)).first;
  const std::string file = (fs::path(it->second) / p.filename()).string();
  for (const Folder& f : folders_) {
    if (file == f.real || absl::StartsWith(it->second + "/", f.real + "/")) {
      return absl::StrCat("it is in lockstepd's ", f.key == "backup_dir" ? "backup" : "output",
                          " folder (server.", f.key, " ", f.path, ")");
    }
  }
  return "";
}

}  // namespace lockstep::config
