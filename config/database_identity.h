// When two inventory entries are one database, and which files are
// lockstepd's own.
//
// A database reached twice (listed twice, listed and discovered, discovered
// by two rules, through a symbolic or a hard link) would be checked and
// migrated twice, by two rollouts at once, or by a rollout of an environment
// it does not belong to. And lockstepd's own files (its state store, the
// store's -wal/-shm/-journal, its backups) must never be fleet databases: a
// failed step would restore an old state store over the live one.
//
// Thread-safe: pure functions (they stat the file system).
#ifndef LOCKSTEP_CONFIG_DATABASE_IDENTITY_H_
#define LOCKSTEP_CONFIG_DATABASE_IDENTITY_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/database_url.h"

namespace lockstep::config {

struct ServerConfig;

// One string per database: equal for two entries exactly when they reach
// the same database. PostgreSQL: server and database name (user, password
// and options do not make another database). SQLite: the file's device and
// inode when it exists (hard and symbolic links fold), else its path with
// `..` and symbolic links resolved. The version table is part of it: one
// file may hold two projects' version tables. Empty for `:memory:`, which
// is never the same as anything.
std::string DatabaseIdentity(const DatabaseUrl& url, const std::string& version_table_schema,
                             const std::string& version_table);

// lockstepd's own files as `server` names them: the state store (and its
// -wal, -shm, -journal) and everything under backup_dir and output_dir. Built once (a
// refresh builds one for all its discovered files: the store's identities
// and the backup folder's real path are worked out once, folders of the
// files asked about are resolved once each).
//
// Not thread-safe (it caches); one per thread or pass.
class OwnFiles {
 public:
  explicit OwnFiles(const ServerConfig& server);
  // Why the SQLite file `path` is lockstepd's own, in words ("it is
  // lockstepd's state store (server.state ...)"); empty when it is not.
  std::string Reason(const std::string& path);

 private:
  std::string state_;
  struct Folder {
    std::string key;   // server.backup_dir, server.output_dir
    std::string path;  // as configured
    std::string real;  // symbolic links resolved
  };
  std::vector<Folder> folders_;
  std::vector<std::pair<std::string, std::string>> state_files_;  // identity, suffix
  std::map<std::string, std::string> real_dirs_;                  // folder -> resolved
};

}  // namespace lockstep::config

#endif  // LOCKSTEP_CONFIG_DATABASE_IDENTITY_H_
