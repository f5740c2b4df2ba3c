#include "daemon/model/states.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace lockstep::daemon {
namespace {

// Every value has one name, distinct within its enum, that parses back to
// it; a name no value has is not parsed.
template <typename E>
void ExpectOneNameEach(int count) {
  std::set<std::string> names;
  int values = 0;
  for (const auto& [value, name] : AllOf<E>()) {
    ++values;
    EXPECT_TRUE(names.insert(std::string(name)).second) << "twice: " << name;
    EXPECT_EQ(NameOf(value), name);
    ASSERT_TRUE(ParseName<E>(name).has_value()) << name;
    EXPECT_EQ(*ParseName<E>(name), value) << name;
  }
  EXPECT_EQ(values, count);  // the last enumerator + 1: a value added without a name fails
  EXPECT_FALSE(ParseName<E>("no-such-state").has_value());
  EXPECT_FALSE(ParseName<E>("Running").has_value());  // names are exact
}

TEST(StatesTest, EachEnumHasOneNameTable) {
  ExpectOneNameEach<DatabaseState>(static_cast<int>(DatabaseState::kUnreachable) + 1);
  ExpectOneNameEach<SchemaState>(static_cast<int>(SchemaState::kDrift) + 1);
  ExpectOneNameEach<RolloutState>(static_cast<int>(RolloutState::kAborted) + 1);
  ExpectOneNameEach<StageState>(static_cast<int>(StageState::kAborted) + 1);
  ExpectOneNameEach<StepState>(static_cast<int>(StepState::kSkipped) + 1);
  ExpectOneNameEach<StepPhase>(static_cast<int>(StepPhase::kRollback) + 1);
  ExpectOneNameEach<FailurePolicy>(static_cast<int>(FailurePolicy::kLeave) + 1);
  ExpectOneNameEach<EventKind>(static_cast<int>(EventKind::kRolloutFinished) + 1);
}

TEST(StatesTest, TheDocumentedNames) {
  EXPECT_EQ(NameOf(DatabaseState::kVersionRowsLost), "version_rows_lost");
  EXPECT_EQ(NameOf(RolloutState::kAwaitingApproval), "awaiting_approval");
  EXPECT_EQ(NameOf(StepPhase::kNone), "");
  EXPECT_EQ(NameOf(FailurePolicy::kDowngrade), "downgrade");
  static_assert(NameOf(StepState::kFailed) == "failed", "usable at compile time");
}

}  // namespace
}  // namespace lockstep::daemon
