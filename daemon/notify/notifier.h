// Webhooks (the inventory's `notify`): rollout events sent as they happen,
// from the state store's event log, so a receiver that is down for a while
// and a lockstepd that restarts miss nothing.
//
// Each webhook has a position in the event log, kept in the state store and
// moved past an event once the receiver answered 2xx (or once the event is
// not one it asked for). Events go out one at a time, in the order they were
// written: in order per rollout, and nothing overtakes an event that has
// not been delivered. A failed delivery is retried after 1 s, 2 s, 4 s ...
// up to a minute, forever. Between the receiver's 2xx and the position's
// write, a killed lockstepd sends that one event again at its next start:
// every request carries X-Lockstep-Delivery, the event's position, for the
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

// The request a webhook is sent for one event: its body and headers (the
// signature included when `secret` is set). Pure: unit-tested alone.
struct WebhookRequest {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};
WebhookRequest BuildWebhookRequest(const config::NotifyConfig& hook,
                                   const StateStore::PositionedEvent& e, const std::string& secret);
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
  // its position by name.
  void Configure(const std::vector<config::NotifyConfig>& hooks);
  // An event was written: look now rather than at the next second.
  void Wake();

 private:
  struct Hook {
    config::NotifyConfig config;
    int failures = 0;  // in a row
    absl::Time next_attempt = absl::InfinitePast();
  };
  struct Metrics;

  void Run();
  // Sends what `hook` is due, in order, until it is up to date or a
  // delivery fails.
  void Deliver(Hook& hook);
  bool Wanted(const Hook& hook, const StateStore::PositionedEvent& e);
  // "" or why the request failed (never the URL).
  std::string Post(const Hook& hook, const StateStore::PositionedEvent& e);

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
