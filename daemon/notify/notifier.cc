#include "daemon/notify/notifier.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/model/states.h"

namespace lockstep::daemon {

namespace {

constexpr int kBatch = 100;
constexpr absl::Duration kIdleLook = absl::Seconds(1);
constexpr absl::Duration kMaxBackoff = absl::Minutes(1);

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

std::string HmacSha256Hex(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(out), static_cast<size_t>(len)));
}

NotifyEvent FromRollout(const StateStore::PositionedEvent& e) {
  NotifyEvent n;
  n.delivery = absl::StrCat("r", e.position);
  n.kind = std::string(NameOf(e.event.kind));
  n.at = e.event.at;
  n.environment = e.event.environment;
  n.database = e.event.database;
  n.message = e.event.message;
  n.rollout_id = e.rollout_id;
  n.rollout_kind = e.rollout_kind;
  n.rollout_target = e.rollout_target;
  n.created_by = e.created_by;
  n.seq = e.event.seq;
  return n;
}

NotifyEvent FromFleet(const StateStore::FleetEvent& e) {
  NotifyEvent n;
  n.delivery = absl::StrCat("f", e.id);
  n.kind = e.kind;
  n.at = e.at;
  n.environment = e.environment;
  n.database = e.database;
  n.message = e.message;
  return n;
}

WebhookRequest BuildWebhookRequest(const config::NotifyConfig& hook, const NotifyEvent& e,
                                   const std::string& secret) {
  const std::string where =
      e.database.empty() ? e.environment : absl::StrCat(e.environment, "/", e.database);
  nlohmann::json body;
  if (hook.format == "slack") {
    const std::string rollout = e.rollout_id.empty()
                                    ? ""
                                    : absl::StrCat(" in ", e.rollout_id, " (", e.rollout_kind,
                                                   " to ", e.rollout_target, ")");
    body["text"] = absl::StrCat("lockstep: ", e.kind, rollout, where.empty() ? "" : " ", where,
                                e.message.empty() ? "" : ": ", e.message);
  } else {
    body = {{"delivery", e.delivery},
            {"webhook", hook.name},
            {"event", e.kind},
            {"at", Rfc3339(e.at)},
            {"environment", e.environment},
            {"database", e.database},
            {"message", e.message},
            {"rollout", nullptr}};
    if (!e.rollout_id.empty()) {
      body["rollout"] = {{"id", e.rollout_id},
                         {"kind", e.rollout_kind},
                         {"target", e.rollout_target},
                         {"created_by", e.created_by},
                         {"seq", e.seq}};
    }
  }
  WebhookRequest r;
  // Event texts are valid UTF-8 already (the engine makes them so).
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.headers = {{"X-Lockstep-Event", e.kind},
               {"X-Lockstep-Delivery", e.delivery},
               {"User-Agent", "lockstepd"}};
  if (!secret.empty()) {
    r.headers.push_back({"X-Lockstep-Signature", "sha256=" + HmacSha256Hex(secret, r.body)});
  }
  return r;
}

struct Notifier::Metrics {
  explicit Metrics(prometheus::Registry* r)
      : deliveries(prometheus::BuildCounter()
                       .Name("lockstep_webhook_deliveries_total")
                       .Help("Webhook requests by result: delivered (2xx) or failed (retried)")
                       .Register(*r)),
        failing(
            prometheus::BuildGauge()
                .Name("lockstep_webhook_failing")
                .Help("Deliveries in a row that failed for the webhook; 0 when it is up to date "
                      "or its last delivery worked")
                .Register(*r)),
        last_delivered(prometheus::BuildGauge()
                           .Name("lockstep_webhook_last_delivery_timestamp_seconds")
                           .Help("When the webhook last answered 2xx")
                           .Register(*r)) {}
  prometheus::Family<prometheus::Counter>& deliveries;
  prometheus::Family<prometheus::Gauge>& failing;
  prometheus::Family<prometheus::Gauge>& last_delivered;
};

Notifier::Notifier(StateStore* store, std::shared_ptr<spdlog::logger> log,
                   prometheus::Registry* registry)
    : store_(store), log_(std::move(log)), metrics_(std::make_unique<Metrics>(registry)) {
  thread_ = std::thread([this] { Run(); });
}

Notifier::~Notifier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (sending_ != nullptr) sending_->stop();  // closes its socket: Post returns
  }
  wake_.notify_all();
  thread_.join();
}

void Notifier::Configure(const std::vector<config::NotifyConfig>& hooks) {
  for (const config::NotifyConfig& h : hooks) {
    // A new webhook's position is taken now, not by the sender later: at
    // start that is before any rollout is recovered or started, so their
    // events are all sent.
    (void)store_->WebhookPosition(h.name);
    (void)store_->WebhookPosition(h.name, /*fleet=*/true);
    metrics_->deliveries.Add({{"webhook", h.name}, {"result", "delivered"}});
    metrics_->deliveries.Add({{"webhook", h.name}, {"result", "failed"}});
    metrics_->failing.Add({{"webhook", h.name}});
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    configured_ = hooks;
    reconfigured_ = true;
    woken_ = true;
  }
  wake_.notify_all();
}

void Notifier::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  wake_.notify_all();
}

void Notifier::Run() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      absl::Time soonest = absl::Now() + kIdleLook;
      for (const Hook& h : hooks_) soonest = std::min(soonest, h.next_attempt);
      wake_.wait_until(lock, absl::ToChronoTime(soonest), [this] { return stopping_ || woken_; });
      if (stopping_) return;
      woken_ = false;
      if (reconfigured_) {
        std::vector<Hook> next;
        for (const config::NotifyConfig& c : configured_) {
          auto same = std::find_if(hooks_.begin(), hooks_.end(),
                                   [&](const Hook& h) { return h.config.name == c.name; });
          Hook h = same != hooks_.end() ? *same : Hook{};
          h.config = c;
          next.push_back(std::move(h));
        }
        hooks_ = std::move(next);
        reconfigured_ = false;
      }
    }
    for (Hook& h : hooks_) {
      if (absl::Now() >= h.next_attempt) Deliver(h, /*fleet=*/false);
      if (absl::Now() >= h.next_attempt) Deliver(h, /*fleet=*/true);
    }
    if (rollout_environments_.size() > 1000) rollout_environments_.clear();
  }
}

void Notifier::Deliver(Hook& hook, bool fleet) {
  const std::string& name = hook.config.name;
  std::optional<int64_t>& at = hook.position[fleet ? 1 : 0];
  if (!at) {
    absl::StatusOr<int64_t> stored = store_->WebhookPosition(name, fleet);
    if (!stored.ok()) return;  // the state store's error is reported where it is written
    at = *stored;
  }
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || reconfigured_) return;
    }
    // The next events of the log, each with where it stands in it.
    std::vector<std::pair<int64_t, NotifyEvent>> next;
    if (fleet) {
      absl::StatusOr<std::vector<StateStore::FleetEvent>> events =
          store_->FleetEventsAfter(*at, kBatch);
      if (!events.ok()) return;
      for (const StateStore::FleetEvent& e : *events) next.emplace_back(e.id, FromFleet(e));
    } else {
      absl::StatusOr<std::vector<StateStore::PositionedEvent>> events =
          store_->EventsAfter(*at, kBatch);
      if (!events.ok()) return;
      for (const StateStore::PositionedEvent& e : *events) {
        next.emplace_back(e.position, FromRollout(e));
      }
    }
    for (const auto& [position_in_log, e] : next) {
      if (!Offer(hook, e)) return;
      at = position_in_log;
      // Saved after each event: a lockstepd killed now repeats at most
      // this one.
      (void)store_->SetWebhookPosition(name, *at, fleet);
    }
    if (static_cast<int>(next.size()) < kBatch) return;
  }
}

bool Notifier::Offer(Hook& hook, const NotifyEvent& e) {
  if (!Wanted(hook, e)) return true;
  const std::string& name = hook.config.name;
  const std::string error = Post(hook, e);
  if (!error.empty()) {
    ++hook.failures;
    const absl::Duration wait =
        std::min(kMaxBackoff, absl::Seconds(1) * (1 << std::min(hook.failures - 1, 6)));
    hook.next_attempt = absl::Now() + wait;
    metrics_->deliveries.Add({{"webhook", name}, {"result", "failed"}}).Increment();
    metrics_->failing.Add({{"webhook", name}}).Set(hook.failures);
    log_->warn("webhook {}: event {} ({}{}{}) not delivered: {}; trying again in {}", name,
               e.delivery, e.kind, e.rollout_id.empty() ? "" : " of ", e.rollout_id, error,
               absl::FormatDuration(wait));
    return false;
  }
  if (hook.failures > 0) {
    log_->info("webhook {}: delivering again after {} failed attempts", name, hook.failures);
  }
  hook.failures = 0;
  metrics_->deliveries.Add({{"webhook", name}, {"result", "delivered"}}).Increment();
  metrics_->failing.Add({{"webhook", name}}).Set(0);
  metrics_->last_delivered.Add({{"webhook", name}})
      .Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  return true;
}

bool Notifier::Wanted(const Hook& hook, const NotifyEvent& e) {
  if (!config::MatchesAnyPattern(hook.config.events, e.kind)) return false;
  if (hook.config.environments.empty()) return true;
  if (!e.environment.empty())
    return config::MatchesAnyPattern(hook.config.environments, e.environment);
  // A revision file edited (the fleet's, no environment): every webhook
  // that asked for it.
  if (e.rollout_id.empty()) return true;
  // A rollout's own event (started, finished...): wanted when the rollout
  // has a stage in one of the webhook's environments.
  auto it = rollout_environments_.find(e.rollout_id);
  if (it == rollout_environments_.end()) {
    std::vector<std::string> envs;
    if (absl::StatusOr<Rollout> r = store_->LoadRollout(e.rollout_id); r.ok()) {
      for (const RolloutStage& s : r->stages) envs.push_back(s.environment);
    }
    it = rollout_environments_.emplace(e.rollout_id, std::move(envs)).first;
  }
  return std::any_of(it->second.begin(), it->second.end(), [&](const std::string& env) {
    return config::MatchesAnyPattern(hook.config.environments, env);
  });
}

std::string Notifier::Post(const Hook& hook, const NotifyEvent& e) {
  absl::StatusOr<std::optional<std::string>> secret = config::ResolvePassword(
      config::DatabaseUrl{}, hook.config.secret, absl::StrCat("webhook ", hook.config.name));
  if (!secret.ok()) return std::string(secret.status().message());
  WebhookRequest request = BuildWebhookRequest(hook.config, e, secret->value_or(""));
  // scheme://host[:port] and the rest (path and query).
  const std::string& url = hook.config.url;
  const size_t host_at = url.find("://") + 3;
  const size_t path_at = url.find('/', host_at);
  const std::string base = url.substr(0, path_at);
  const std::string path = path_at == std::string::npos ? "/" : url.substr(path_at);
  httplib::Client client(base);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(10, 0);
  client.set_write_timeout(10, 0);
  httplib::Headers headers(request.headers.begin(), request.headers.end());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return "lockstepd is stopping";
    sending_ = &client;
  }
  httplib::Result res = client.Post(path, headers, request.body, "application/json");
  {
    std::lock_guard<std::mutex> lock(mu_);
    sending_ = nullptr;
  }
  if (!res) return absl::StrCat("no answer (", httplib::to_string(res.error()), ")");
  if (res->status / 100 != 2) return absl::StrCat("HTTP ", res->status);
  return "";
}

}  // namespace lockstep::daemon
