// Webhooks (the inventory's `notify`): rollout events, and what refreshes
// find in the fleet (schema drift, revision files edited after they were
// applied), sent as they happen from the state store's event logs, so a
// receiver that is down for a while and a lockstepd that restarts miss
// nothing.
//
// Each webhook has a position in each event log, kept in the state store and
// moved past an event once the receiver answered 2xx (or once the event is
// not one it asked for). Events go out one at a time, in the order they were
// written: in order per rollout, and nothing overtakes an event that has
// not been delivered. A failed delivery is retried after 1 s, 2 s, 4 s ...
// up to a minute, forever. Between the receiver's 2xx and the position's
// write, a killed lockstepd sends that one event again at its next start:
// every request carries X-Lockstep-Delivery, unique per event, for the
// receiver to drop repeats.
//
// Requests: POST, JSON (format json: the event; format slack: {"text"}),
// X-Lockstep-Event, X-Lockstep-Delivery, and with a secret
// X-Lockstep-Signature: sha256=HEX(HMAC-SHA256(secret, body)).
// The URL is never logged (a Slack webhook's URL is its credential); logs
// and metrics name the webhook.
#ifndef LOCKSTEP_DAEMON_NOTIFY_NOTIFIER_H_
#define LOCKSTEP_DAEMON_NOTIFY_NOTIFIER_H_

#include <spdlog/logger.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "config/inventory.h"
#include "daemon/state/state_store.h"

namespace prometheus {
class Registry;
}
namespace httplib {
class Client;
}

namespace lockstep::daemon {

// One event as webhooks see it: a rollout's (rollout_id set) or the
// fleet's (schema_drift, checksum_changed: found by a refresh).
struct NotifyEvent {
  std::string delivery;  // unique per event: "r<position>" or "f<id>"
  std::string kind;
  absl::Time at;
  std::string environment;
  std::string database;
  std::string message;
  std::string rollout_id;  // empty for the fleet's
  std::string rollout_kind;
  std::string rollout_target;
  std::string created_by;
  int64_t seq = 0;  // within the rollout
};
NotifyEvent FromRollout(const StateStore::PositionedEvent& e);
NotifyEvent FromFleet(const StateStore::FleetEvent& e);

// The request a webhook is sent for one event: its body and headers (the
// signature included when `secret` is set). Pure: unit-tested alone.
struct WebhookRequest {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};
WebhookRequest BuildWebhookRequest(const config::NotifyConfig& hook, const NotifyEvent& e,
                                   const std::string& secret);
// HEX(HMAC-SHA256(key, data)), lower case.
std::string HmacSha256Hex(const std::string& key, const std::string& data);

class Notifier {
 public:
  // `store` and `registry` must outlive the notifier.
  Notifier(StateStore* store, std::shared_ptr<spdlog::logger> log, prometheus::Registry* registry);
  ~Notifier();  // stops the sender (a request under way is cut off)
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // The webhooks to send to: at start and after a reload. A webhook keeps
  // its positions by name.
  void Configure(const std::vector<config::NotifyConfig>& hooks);
  // An event was written: look now rather than at the next second.
  void Wake();

 private:
  struct Hook {
    config::NotifyConfig config;
    int failures = 0;  // in a row
    absl::Time next_attempt = absl::InfinitePast();
    // Where it stands in the rollouts' log [0] and the fleet's [1]: read
    // from the state store once, then kept here and written on each move.
    std::optional<int64_t> position[2];
  };
  struct Metrics;

  void Run();
  // Sends what `hook` is due from one log (the rollouts', or with `fleet`
  // the fleet's), in order, until it is up to date or a delivery fails.
  void Deliver(Hook& hook, bool fleet);
  // Sends `e` if `hook` asked for it: false when that failed (the hook then
  // waits before it tries again).
  bool Offer(Hook& hook, const NotifyEvent& e);
  bool Wanted(const Hook& hook, const NotifyEvent& e);
  // "" or why the request failed (never the URL).
  std::string Post(const Hook& hook, const NotifyEvent& e);

  StateStore* const store_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Metrics> metrics_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool woken_ = false;
  httplib::Client* sending_ = nullptr;            // under mu_: stopped by the destructor
  std::vector<config::NotifyConfig> configured_;  // under mu_; taken by the sender
  bool reconfigured_ = false;
  // The sender's own (no lock): its hooks, and each rollout's environments.
  std::vector<Hook> hooks_;
  std::map<std::string, std::vector<std::string>> rollout_environments_;
  std::thread thread_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_NOTIFY_NOTIFIER_H_
