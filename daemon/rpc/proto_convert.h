// Conversions shared by the service's files: times, durations, lists.
#ifndef LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_
#define LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace lockstep::daemon {

// Unset (InfinitePast) times stay unset in the message.
inline void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) return;
  timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

inline void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  timespec ts = absl::ToTimespec(d);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

template <typename Repeated>
inline void Copy(const std::vector<std::string>& in, Repeated* out) {
  for (const std::string& s : in) out->Add(std::string(s));
}

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_
