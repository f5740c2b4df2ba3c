#include "daemon/rpc/reply_size.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/model/utf8.h"

namespace lockstep::daemon {

int FitRolloutReply(const google::protobuf::Message& reply,
                    const std::vector<v1::Rollout*>& rollouts, size_t budget) {
  if (reply.ByteSizeLong() <= budget) return 0;
  std::map<v1::RolloutStep*, size_t> cut;  // step -> its output's size before
  auto shorten = [&](const v1::Rollout& r, v1::RolloutStep* s, size_t keep) {
    const size_t before = cut.count(s) ? cut[s] : s->output().size();
    std::string tail(CutUtf8Front(s->output(), keep));
    const std::string where =
        s->output_log().empty()
            ? absl::StrCat("`lockstep watch ", r.id(), "` replays every line")
            : absl::StrCat("the whole output is in ", s->output_log(), " on lockstepd's host");
    s->set_output(absl::StrCat("[lockstep: ", before - tail.size(),
                               " bytes of output left out to keep this reply under 4 MiB; ", where,
                               "]\n", tail));
    cut[s] = before;
  };
  for (int pass = 0; pass < 3 && reply.ByteSizeLong() > budget; ++pass) {
    for (v1::Rollout* r : rollouts) {
      for (v1::RolloutStep& s : *r->mutable_steps()) {
        if (s.output().empty()) continue;
        if (pass == 0 && s.state() == v1::STEP_STATE_SUCCEEDED && !cut.count(&s))
          shorten(*r, &s, 0);
        if (pass == 1 && !cut.count(&s) && s.output().size() > 4096) shorten(*r, &s, 4096);
        if (pass == 2) shorten(*r, &s, 0);
      }
    }
  }
  return static_cast<int>(cut.size());
}

}  // namespace lockstep::daemon
