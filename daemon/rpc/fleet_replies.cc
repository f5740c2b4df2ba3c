#include "daemon/rpc/fleet_replies.h"

namespace lockstep::daemon {

void FleetReplies::Get(std::shared_ptr<const FleetSnapshot> snapshot, const std::string& key,
                       const v1::GetFleetRequest& request, std::function<void(const Reply&)> done) {
  const Key k(snapshot.get(), key);
  std::optional<Reply> built;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(k);
    if (it != entries_.end() && !it->second.reply) {  // being built: wait for it
      it->second.waiting.push_back(std::move(done));
      return;
    }
    if (it != entries_.end()) {
      built = it->second.reply;
    } else {
      Evict(snapshot.get());
      Entry& e = entries_[k];
      e.snapshot = snapshot;
      e.seq = ++builds_;
    }
  }
  if (built) {
    done(*built);
    return;
  }
  Reply reply;
  v1::GetFleetResponse out;
  reply.status = build_(request, *snapshot, &out);
  if (reply.status.ok()) reply.bytes = std::make_shared<const std::string>(out.SerializeAsString());
  std::vector<std::function<void(const Reply&)>> waiting;
  {
    MutexLock lock(mu_);
    Entry& e = entries_[k];  // a building entry is never evicted
    e.reply = reply;
    waiting.swap(e.waiting);
  }
  done(reply);
  for (auto& w : waiting) w(reply);
}

void FleetReplies::Evict(const FleetSnapshot* newest) {
  size_t count = 0;
  size_t bytes = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = it->second;
    if (e.reply && it->first.first != newest) {  // an older snapshot's
      it = entries_.erase(it);
      continue;
    }
    ++count;
    bytes += e.reply && e.reply->bytes ? e.reply->bytes->size() : 0;
    ++it;
  }
  // Then the oldest built ones, while there are too many or too much.
  while (count >= kKept || bytes > kKeptBytes) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.reply && (oldest == entries_.end() || it->second.seq < oldest->second.seq))
        oldest = it;
    }
    if (oldest == entries_.end()) return;  // all being built
    bytes -= oldest->second.reply->bytes ? oldest->second.reply->bytes->size() : 0;
    --count;
    entries_.erase(oldest);
  }
}

int FleetReplies::builds() {
  MutexLock lock(mu_);
  return builds_;
}

grpc::Slice SharedSlice(std::shared_ptr<const std::string> bytes) {
  auto* held = new std::shared_ptr<const std::string>(std::move(bytes));
  return grpc::Slice(
      const_cast<char*>((*held)->data()), (*held)->size(),
      [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); }, held);
}

}  // namespace lockstep::daemon
