// The connections a driver keeps open to its servers (PostgreSQL, MySQL):
// one bounded pool per server, user and password. Header-only (templates
// over each driver's connection type); for daemon/drivers/ only.
//
// Idle connections are kept under a key and reused for the same key: the
// database, for a libpq connection (it serves one database); "" for a MySQL
// one (it serves any). When a pool is full, the oldest idle connection is
// closed to make room; with none idle, Acquire waits for a Release.
#ifndef LOCKSTEP_DAEMON_DRIVERS_CONNECTION_POOL_H_
#define LOCKSTEP_DAEMON_DRIVERS_CONNECTION_POOL_H_

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "config/database_url.h"
#include "daemon/schema/schema.h"  // Sha256Hex

namespace lockstep::daemon {

template <typename Conn>
class ConnectionPool {
 public:
  // `reusable`: whether a connection given back may serve again (null: any).
  ConnectionPool(int max, std::function<bool(const Conn&)> reusable)
      : max_(std::max(1, max)), reusable_(std::move(reusable)) {}

  // An idle connection for `key` (*reused = true; `fresh` skips them), or
  // the one `open` makes. When `open` returns null or throws, its slot is
  // freed and the null returned (the exception rethrown).
  std::unique_ptr<Conn> Acquire(const std::string& key, bool fresh, bool* reused,
                                const std::function<std::unique_ptr<Conn>()>& open) {
    *reused = false;
    std::unique_ptr<Conn> evicted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        for (auto it = idle_.begin(); !fresh && it != idle_.end(); ++it) {
          if (it->first == key) {
            std::unique_ptr<Conn> c = std::move(it->second);
            idle_.erase(it);
            *reused = true;
            return c;
          }
        }
        if (open_ < max_) break;
        if (!idle_.empty()) {
          evicted = std::move(idle_.back().second);
          idle_.pop_back();
          --open_;
          break;
        }
        cv_.wait(lock);
      }
      ++open_;
    }
    evicted.reset();  // closed outside the lock
    std::unique_ptr<Conn> c;
    try {
      c = open();
    } catch (...) {
      Release(key, nullptr);
      throw;
    }
    if (!c) Release(key, nullptr);
    return c;
  }

  // Gives a connection back for `key`; nullptr (or one not reusable) frees
  // its slot.
  void Release(const std::string& key, std::unique_ptr<Conn> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c && (!reusable_ || reusable_(*c))) {
      idle_.emplace_front(key, std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

 private:
  const int max_;
  const std::function<bool(const Conn&)> reusable_;
  std::mutex mu_;
  std::condition_variable cv_;
  int open_ = 0;  // guarded by mu_: idle plus in use
  std::list<std::pair<std::string, std::unique_ptr<Conn>>> idle_;  // guarded by mu_
};

// A driver's pools, one per server (host, port, unix socket), user and
// password digest: a password changed in the inventory or its file is
// proven on a new connection, not taken on trust from one the old password
// opened. Thread-safe; pools live as long as this object.
template <typename Conn>
class ServerPools {
 public:
  ServerPools(int max_per_server, std::function<bool(const Conn&)> reusable = nullptr)
      : max_(max_per_server), reusable_(std::move(reusable)) {}

  ConnectionPool<Conn>* For(const config::DatabaseUrl& url) {
    auto socket = url.query.find("unix_socket");
    const std::string server =
        absl::StrCat(url.host, ":", url.port, ":", socket == url.query.end() ? "" : socket->second,
                     ":", url.user, ":", url.password ? Sha256Hex(*url.password) : std::string());
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<ConnectionPool<Conn>>& p = pools_[server];
    if (!p) p = std::make_unique<ConnectionPool<Conn>>(max_, reusable_);
    return p.get();
  }

 private:
  const int max_;
  const std::function<bool(const Conn&)> reusable_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ConnectionPool<Conn>>> pools_;  // guarded by mu_
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_CONNECTION_POOL_H_
