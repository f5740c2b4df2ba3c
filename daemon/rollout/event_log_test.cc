// The event log against a real SQLite state store.
#include "daemon/rollout/event_log.h"

#include <sqlite3.h>

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = StateStore::Open(tmp_.path() + "/state.db");
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = *std::move(opened);
    Rollout r;
    r.id = "r-1";
    ASSERT_TRUE(store_->SaveRollout(r).ok());
  }
  static RolloutEvent Event(EventKind kind, const std::string& message) {
    return RolloutEvent{0, absl::FromUnixSeconds(100), kind, "prod", "t1", message};
  }
  std::vector<RolloutEvent> Stored(int64_t after = 0) {
    auto events = store_->Events("r-1", after, 100000);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<RolloutEvent>{};
  }

  lockstep::testing::TempDir tmp_{"lockstep-events"};
  std::unique_ptr<StateStore> store_;
};

// Output lines are readable at once and reach the store in batches; a
// state event is in the store, with every line before it, when Append
// returns.
TEST_F(EventLogTest, LinesAreReadableAtOnceAndAStateEventWritesEverythingBeforeIt) {
  EventLog log(store_.get(), nullptr, absl::Hours(1));  // the writer never runs by itself
  for (int i = 0; i < 5000; ++i) {
    RolloutEvent e = Event(EventKind::kOutput, absl::StrCat("line ", i));
    ASSERT_TRUE(log.Append("r-1", &e, false).ok());
    EXPECT_EQ(e.seq, i + 1);
  }
  EXPECT_THAT(Stored(), ::testing::IsEmpty());  // nothing written yet
  auto read = log.Read("r-1", 4990, 100);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 10u);
  EXPECT_EQ(read->front().message, "line 4990");
  RolloutEvent done = Event(EventKind::kVerified, "holds [b2]");
  ASSERT_TRUE(log.Append("r-1", &done, true).ok());
  EXPECT_EQ(done.seq, 5001);
  std::vector<RolloutEvent> stored = Stored();
  ASSERT_EQ(stored.size(), 5001u);
  EXPECT_EQ(stored[4999].message, "line 4999");
  EXPECT_EQ(NameOf(stored.back().kind), "verified");
  // Older than memory keeps (kKeepWritten): read from the store, in order.
  read = log.Read("r-1", 0, 3);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ((*read)[0].message, "line 0");
}

// The writer thread writes on its own, and numbering goes on from what the
// store holds (a restarted lockstepd).
TEST_F(EventLogTest, TheWriterFlushesAndNumbersContinueAfterARestart) {
  {
    EventLog log(store_.get(), nullptr, absl::Milliseconds(10));
    RolloutEvent e = Event(EventKind::kOutput, "first");
    ASSERT_TRUE(log.Append("r-1", &e, false).ok());
    for (int i = 0; i < 200 && Stored().empty(); ++i) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_EQ(Stored().size(), 1u);
    RolloutEvent last = Event(EventKind::kOutput, "queued when it stops");
    ASSERT_TRUE(log.Append("r-1", &last, false).ok());
  }  // destroyed: writes what is queued
  EXPECT_EQ(Stored().size(), 2u);
  EventLog again(store_.get(), nullptr);
  RolloutEvent e = Event(EventKind::kStepStarted, "again");
  ASSERT_TRUE(again.Append("r-1", &e, true).ok());
  EXPECT_EQ(e.seq, 3);
}

// Readers and a writer at once: every reader sees every event, in order,
// without gaps, while the lines are being written.
TEST_F(EventLogTest, ReadersSeeEveryEventInOrder) {
  EventLog log(store_.get(), nullptr, absl::Milliseconds(5));
  constexpr int kLines = 20000;
  std::atomic<bool> bad{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 8; ++r) {
    readers.emplace_back([&] {
      int64_t after = 0;
      while (after < kLines) {
        auto got = log.Read("r-1", after, 500);
        if (!got.ok()) {
          bad = true;
          return;
        }
        for (const RolloutEvent& e : *got) {
          if (e.seq != after + 1) bad = true;
          after = e.seq;
        }
      }
    });
  }
  for (int i = 0; i < kLines; ++i) {
    RolloutEvent e = Event(EventKind::kOutput, absl::StrCat("line ", i));
    ASSERT_TRUE(log.Append("r-1", &e, false).ok());
  }
  for (std::thread& t : readers) t.join();
  EXPECT_FALSE(bad);
  ASSERT_TRUE(log.Flush().ok());
  EXPECT_EQ(Stored().size(), static_cast<size_t>(kLines));
}

// A store that refuses writes (another process holds its write lock): the
// state event says so, nothing leaves memory, and the queued events are
// written once the store takes writes again.
TEST_F(EventLogTest, AStoreThatRefusesWritesKeepsTheEventsQueued) {
  EventLog log(store_.get(), nullptr, absl::Hours(1));
  RolloutEvent line = Event(EventKind::kOutput, "before");
  ASSERT_TRUE(log.Append("r-1", &line, false).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((tmp_.path() + "/state.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  RolloutEvent state = Event(EventKind::kStepFailed, "x");
  EXPECT_FALSE(log.Append("r-1", &state, true).ok());
  auto read = log.Read("r-1", 0, 10);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->size(), 2u);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE(log.Flush().ok());
  std::vector<RolloutEvent> stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(NameOf(stored[1].kind), "step_failed");
}

}  // namespace
}  // namespace lockstep::daemon
