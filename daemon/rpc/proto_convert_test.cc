#include "daemon/rpc/proto_convert.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace lockstep::daemon {
namespace {

// Each model enum and its lockstep.v1 mirror have the same values: every
// model value goes to a distinct wire value with its documented name and
// comes back, and every wire value but UNSPECIFIED is some model value's.
template <typename E>
void ExpectMirrored() {
  using W = typename WireEnum<E>::type;
  const auto* d = google::protobuf::GetEnumDescriptor<W>();
  std::set<int> reached;
  for (const auto& [value, name] : AllOf<E>()) {
    W w = ToWire(value);
    EXPECT_EQ(v1::WireName(w), name) << d->name();
    EXPECT_EQ(w == 0, name.empty()) << d->name() << " " << name;
    EXPECT_TRUE(reached.insert(w).second) << d->name() << " " << name;
    ASSERT_TRUE(FromWire<E>(w).has_value()) << d->name() << " " << name;
    EXPECT_EQ(*FromWire<E>(w), value) << d->name() << " " << name;
  }
  for (int i = 0; i < d->value_count(); ++i) {
    int n = d->value(i)->number();
    if (n == 0) continue;
    EXPECT_TRUE(reached.count(n)) << d->value(i)->name() << " has no model value";
  }
}

TEST(ProtoConvertTest, EveryModelEnumIsMirroredOnTheWire) {
  ExpectMirrored<DatabaseState>();
  ExpectMirrored<SchemaState>();
  ExpectMirrored<RolloutState>();
  ExpectMirrored<StageState>();
  ExpectMirrored<StepState>();
  ExpectMirrored<StepPhase>();
  ExpectMirrored<FailurePolicy>();
  ExpectMirrored<EventKind>();
}

TEST(ProtoConvertTest, WireNamesAreTheDocumentedOnes) {
  EXPECT_EQ(v1::WireName(v1::DATABASE_STATE_VERSION_ROWS_LOST), "version_rows_lost");
  EXPECT_EQ(v1::WireName(v1::EVENT_KIND_OVERRIDE_SCHEMA_CHECK), "override_schema_check");
  EXPECT_EQ(v1::WireName(v1::STEP_PHASE_UNSPECIFIED), "");
  // A number from a newer lockstepd is shown, not hidden.
  EXPECT_EQ(v1::WireName(static_cast<v1::StepState>(42)), "42");
  EXPECT_EQ(v1::ParseWireName<v1::DatabaseState>("behind"), v1::DATABASE_STATE_BEHIND);
  EXPECT_FALSE(v1::ParseWireName<v1::DatabaseState>("Behind").has_value());
  EXPECT_FALSE(v1::ParseWireName<v1::DatabaseState>("unspecified").has_value());
  EXPECT_FALSE(v1::ParseWireName<v1::DatabaseState>("sideways").has_value());
  EXPECT_FALSE(FromWire<DatabaseState>(static_cast<v1::DatabaseState>(42)).has_value());
}

}  // namespace
}  // namespace lockstep::daemon
