// Revision files changed after they were applied (like Flyway's
// `validate`): the SHA-256 of every revision file a database has applied
// (its version rows and every revision they imply) is recorded when a
// lockstep step applies it, and as a baseline the first time lockstep sees
// the database at a revision; a file whose bytes differ now is reported per
// revision and database. A change in comments, blank lines or spacing only
// (the code is the same) is told apart from an edit.
//
// Example:
//   ChecksumLedger ledger;
//   ledger.Load(store);
//   ledger.BeginPass();
//   std::vector<ChangedRevision> changed =
//       ledger.Observe("prod/t1", {"a1", "b2"}, current, now);
//   ledger.Save(store);
#ifndef LOCKSTEP_DAEMON_CORE_REVISION_CHECKSUMS_H_
#define LOCKSTEP_DAEMON_CORE_REVISION_CHECKSUMS_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/model/fleet.h"
#include "daemon/model/mutex.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {

struct FileChecksum {
  std::string sha256;       // of the bytes
  std::string code_sha256;  // of the code: comments, docstrings, blank lines and spacing left out
  bool operator==(const FileChecksum& o) const {
    return sha256 == o.sha256 && code_sha256 == o.code_sha256;
  }
};

// The checksums of a Python source text.
FileChecksum ChecksumOf(absl::string_view text);
// The text ChecksumOf hashes for code_sha256 (for tests and for seeing why
// two files count as the same code): per logical line, its indentation and
// its tokens without the spaces between them; comments and statement
// strings (docstrings) left out.
std::string CodeOf(absl::string_view text);

// One revision as a database applied it.
struct AppliedFile {
  FileChecksum checksum;
  absl::Time at;
  bool baseline = false;  // first seen applied, not applied by lockstep
};
using ChecksumSet = std::map<std::string, AppliedFile>;  // by revision

// A set as text ("revision sha256 code_sha256 at_micros applied|baseline"
// per line, by revision) and back; the text's SHA-256 is the set's id.
std::string ChecksumSetBody(const ChecksumSet& set);
absl::StatusOr<ChecksumSet> ParseChecksumSet(absl::string_view body);

// The file as it is now; nullopt when it cannot be read.
using CurrentChecksumFn = std::function<std::optional<FileChecksum>(const std::string& revision)>;

// What each database applied, shared by content, kept in the state store.
// Thread-safe.
class ChecksumLedger {
 public:
  absl::Status Load(StateStore* store);
  // Starts a refresh pass: what the last one worked out is forgotten (the
  // files may have changed since).
  void BeginPass();
  // `applied`: the revisions the database's version rows imply. Records a
  // baseline for those it has none for, and returns those whose file
  // changed since (sorted by revision). Databases that applied the same
  // files at the same revisions cost one comparison per pass.
  std::vector<ChangedRevision> Observe(const std::string& database,
                                       const std::vector<std::string>& applied,
                                       const CurrentChecksumFn& current, absl::Time now);
  // A lockstep step ran `revisions` on `database`: upgraded (their files as
  // they are now are what ran) or downgraded (no longer applied).
  void Applied(const std::string& database, const std::vector<std::string>& revisions, bool upgrade,
               const CurrentChecksumFn& current, absl::Time now);
  // Writes what changed since the last Save.
  absl::Status Save(StateStore* store);

 private:
  struct Outcome {
    std::string set_id;
    std::vector<ChangedRevision> changed;
  };
  // Adds `set` (if new) and points `database` at it.
  void Point(const std::string& database, ChecksumSet set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<const ChecksumSet> SetOf(const std::string& database) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<const ChecksumSet>> sets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> of_ ABSL_GUARDED_BY(mu_);
  ChecksumSets unsaved_ ABSL_GUARDED_BY(mu_);
  // This pass: (set id, applied revisions) -> outcome.
  std::map<std::string, Outcome> memo_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_CORE_REVISION_CHECKSUMS_H_
