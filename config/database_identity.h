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

#include <string>

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

// Why the SQLite file `path` is lockstepd's own, in words ("it is
// lockstepd's state store (server.state)"); empty when it is not.
std::string OwnFileReason(const ServerConfig& server, const std::string& path);

}  // namespace lockstep::config

#endif  // LOCKSTEP_CONFIG_DATABASE_IDENTITY_H_
