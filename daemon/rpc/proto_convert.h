// Conversions shared by the service's files: times, durations, lists, and
// the model's enums to their lockstep.v1 mirrors (by name: each model value
// and its proto value share one documented name; states_test checks every
// value of every pair).
#ifndef LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_
#define LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/model/states.h"
#include "lockstep/v1/lockstep.pb.h"
#include "lockstep/v1/wire_names.h"

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

// The lockstep.v1 enum that mirrors each model enum (same name).
template <typename E>
struct WireEnum;
#define LOCKSTEP_WIRE_ENUM(E) \
  template <>                 \
  struct WireEnum<E> {        \
    using type = v1::E;       \
  }
LOCKSTEP_WIRE_ENUM(DatabaseState);
LOCKSTEP_WIRE_ENUM(SchemaState);
LOCKSTEP_WIRE_ENUM(RolloutState);
LOCKSTEP_WIRE_ENUM(StageState);
LOCKSTEP_WIRE_ENUM(StepState);
LOCKSTEP_WIRE_ENUM(StepPhase);
LOCKSTEP_WIRE_ENUM(FailurePolicy);
LOCKSTEP_WIRE_ENUM(EventKind);
#undef LOCKSTEP_WIRE_ENUM

// Model value -> wire value, through the one name both have.
template <typename E>
typename WireEnum<E>::type ToWire(E value) {
  using W = typename WireEnum<E>::type;
  const absl::string_view name = NameOf(value);
  return v1::ParseWireName<W>(std::string_view(name.data(), name.size()))
      .value_or(static_cast<W>(0));
}

// Wire value -> model value: FromWire<DatabaseState>(req.state()); nullopt
// for a number this build does not know (UNSPECIFIED is the "" name, which
// only StepPhase has).
template <typename E>
std::optional<E> FromWire(typename WireEnum<E>::type value) {
  return ParseName<E>(v1::WireName(value));
}

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_RPC_PROTO_CONVERT_H_
