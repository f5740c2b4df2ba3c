// Small helpers shared by the state store's files: how lists and times are
// stored, and the one place SQLiteCpp's exceptions become a Status.
#ifndef LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_
#define LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "daemon/model/states.h"

namespace lockstep::daemon::store_util {

// Revision lists are stored comma-separated (revision ids never hold commas).
inline std::string Join(const std::vector<std::string>& v) { return absl::StrJoin(v, ","); }
inline std::vector<std::string> Split(const std::string& s) {
  return absl::StrSplit(s, ',', absl::SkipEmpty());
}
// "Never" (InfinitePast) is stored as INT64_MIN and read back as "never".
inline int64_t Micros(absl::Time t) {
  return t == absl::InfinitePast() ? INT64_MIN : absl::ToUnixMicros(t);
}
inline absl::Time FromMicros(int64_t us) {
  return us == INT64_MIN ? absl::InfinitePast() : absl::FromUnixMicros(us);
}

// States are stored by name (states.h). A name this lockstepd does not
// know (a store written by a newer one, or edited by hand) throws, and
// Guard turns that into an error naming the column and the value.
template <typename E>
E Stored(const std::string& name, const char* column) {
  std::optional<E> value = ParseName<E>(name);
  if (!value) {
    throw std::runtime_error(
        absl::StrCat(column, " holds '", name, "', which this lockstepd does not know"));
  }
  return *value;
}
template <typename E>
std::string Name(E value) {
  return std::string(NameOf(value));
}

template <typename F>
absl::Status Guard(const char* what, F&& f) {
  try {
    f();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("state store: ", what, ": ", e.what()));
  }
}

// Statements prepared once per connection, for the writes a rollout makes
// per step and per event (preparing them each time was a fifth of
// lockstepd's CPU in a rollout). Not thread-safe: the store's mutex guards
// it. Destroy it before its Database.
class StatementCache {
 public:
  // The statement for `sql`, bound afresh by its user; reset when the handle
  // goes, so that a stepped SELECT does not keep its read snapshot open.
  class Handle {
   public:
    explicit Handle(SQLite::Statement* q) : q_(q) {}
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { q_->tryReset(); }
    SQLite::Statement& operator*() const { return *q_; }
    SQLite::Statement* operator->() const { return q_; }

   private:
    SQLite::Statement* q_;
  };

  explicit StatementCache(SQLite::Database* db) : db_(db) {}
  Handle Get(const std::string& sql) {
    std::unique_ptr<SQLite::Statement>& q = statements_[sql];
    if (!q) q = std::make_unique<SQLite::Statement>(*db_, sql);
    q->tryReset();  // after an exception in its last use
    return Handle(q.get());
  }

 private:
  SQLite::Database* db_;
  std::map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
};

}  // namespace lockstep::daemon::store_util

#endif  // LOCKSTEP_DAEMON_STATE_STORE_UTIL_H_
