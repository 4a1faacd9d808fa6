#include "voxd/daemon/model_queue.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "temp_dir.hpp"
#include "voxd/common/hash.hpp"

using namespace voxd;
namespace fs = std::filesystem;

namespace {

// The rest of the daemon as the queue sees it: manifests answer when the test says so, blob
// fetches are recorded and finished by the test.
struct fake_backend : model_backend {
  std::map<std::string, manifest_resolver::callback> resolving;  // repo -> pending answer
  std::vector<std::pair<blob_request, std::string>> wanted;
  std::vector<std::string> events;
  std::map<std::string, bool> active;

  void resolve(const repo_id& repo, const std::string&, manifest_resolver::callback done) override {
    resolving[repo.str()] = std::move(done);
  }
  void want(const blob_request& req, const std::string& model) override {
    wanted.emplace_back(req, model);
  }
  void unwant(const std::string& model) override { active.erase(model); }
  void set_active(const std::string& model, bool a) override { active[model] = a; }
  std::optional<blob_status> blob_status_of(const blob_id&) const override { return std::nullopt; }
  std::optional<swarm_stats> seed_stats(const blob_id&) const override { return std::nullopt; }
  void seed(const blob_id&, const repo_id&, std::uint64_t) override {}
  void unseed(const blob_id&) override {}
  void broadcast(std::string_view event, const nlohmann::json& body, const std::string&) override {
    events.push_back(std::string(event) + " " + body.value("state", std::string()));
  }
};

class ModelQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    st_ = std::make_unique<store>(root_ / "hub", root_ / "state");
    ASSERT_TRUE(st_->init());
  }

  model_spec spec(const std::string& repo) { return model_spec{*repo_id::parse(repo), "main", ""}; }
  std::string file() const { return (root_ / "state" / "models.json").string(); }

  // A manifest of one file whose bytes the test can put into the store as a verified blob.
  manifest one_file(const std::string& content) {
    return manifest{*commit_id::parse(std::string(40, 'c')),
                    {{"model.bin", content.size(), sha256_hex(content)}}};
  }
  void put_partial(const blob_id& blob, const std::string& content, const repo_id& repo) {
    const auto part = root_ / "state" / "incoming";
    std::ofstream(part) << content;
    ASSERT_TRUE(st_->commit_blob(repo, blob, part));
  }

  voxd::testing::temp_dir tmp_{"queue"};
  fs::path root_ = tmp_.path();
  std::unique_ptr<store> st_;
  fake_backend backend_;
};

}  // namespace

TEST_F(ModelQueueTest, aModelGoesFromQueuedThroughResolvingAndDownloadingToComplete) {
  model_queue q(*st_, backend_, file(), 2);
  auto& m = q.add(spec("org/a"));
  EXPECT_EQ(m.state, model_state::resolving);  // scheduled at once: a slot is free
  const std::string bytes = "hello";
  backend_.resolving.at("org/a")(one_file(bytes));
  EXPECT_EQ(m.state, model_state::downloading);
  ASSERT_EQ(backend_.wanted.size(), 1u);
  const auto blob = backend_.wanted[0].first.blob;
  put_partial(blob, bytes, m.spec.repo);
  q.on_blob_done(blob, ok(), {});
  EXPECT_EQ(m.state, model_state::complete);
  EXPECT_TRUE(fs::exists(q.snapshot_dir(m) / "model.bin"));
  EXPECT_EQ(q.model_json(m)["state"], "complete");
  EXPECT_EQ(backend_.events.front(), "model.state queued");
}

TEST_F(ModelQueueTest, maxActiveHoldsTheRestInTheQueueInTheOrderAdded) {
  model_queue q(*st_, backend_, file(), 1);
  auto& a = q.add(spec("org/a"));
  auto& b = q.add(spec("org/b"));
  auto& c = q.add(spec("org/c"));
  EXPECT_EQ(a.state, model_state::resolving);
  EXPECT_EQ(b.state, model_state::queued);
  EXPECT_EQ(c.state, model_state::queued);
  backend_.resolving.at("org/a")(make_error(errc::not_found, "no such repo"));
  EXPECT_EQ(a.state, model_state::error);
  EXPECT_EQ(a.error, "no such repo");
  EXPECT_EQ(b.state, model_state::resolving);  // the next in order
  EXPECT_EQ(c.state, model_state::queued);
  q.pause(b);
  EXPECT_EQ(b.state, model_state::paused);
  EXPECT_FALSE(backend_.active.at(b.key()));
  EXPECT_EQ(c.state, model_state::resolving);
  q.resume(a);  // from error: queued behind c
  EXPECT_EQ(a.state, model_state::queued);
}

TEST_F(ModelQueueTest, theQueueSurvivesARestartAndWorkUnderWayIsQueuedAgain) {
  {
    model_queue q(*st_, backend_, file(), 1);
    q.add(spec("org/a"));
    auto& b = q.add(spec("org/b"));
    q.pause(b);
  }
  model_queue again(*st_, backend_, file(), 1);
  ASSERT_TRUE(again.load());
  ASSERT_EQ(again.models().size(), 2u);
  EXPECT_EQ(again.models().at("org/a@main").state, model_state::queued);
  EXPECT_EQ(again.models().at("org/b@main").state, model_state::paused);
  const auto list = again.models_json();
  EXPECT_EQ(list[0]["model"], "org/a@main");  // the order they were added
  // Added later, a third model goes behind them.
  EXPECT_GT(again.add(spec("org/c")).seq, again.models().at("org/b@main").seq);
}

TEST_F(ModelQueueTest, aDamagedQueueFileIsSetAsideNotReplaced) {
  fs::create_directories(root_ / "state");
  std::ofstream(file()) << "{\"models\": [{\"repo\": \"not a repo\"}]}";
  model_queue q(*st_, backend_, file(), 1);
  ASSERT_TRUE(q.load());
  EXPECT_TRUE(q.models().empty());
  EXPECT_TRUE(fs::exists(file() + ".damaged"));
}

TEST_F(ModelQueueTest, namesFindModelsByKeyAliasOrRepo) {
  model_queue q(*st_, backend_, file(), 1);
  catalog names({});
  q.add(model_spec{*repo_id::parse("openbmb/VoxCPM1.5"), "main", "voxcpm-1.5"});
  EXPECT_TRUE(q.find("openbmb/VoxCPM1.5@main", names));
  EXPECT_TRUE(q.find("voxcpm-1.5", names));
  EXPECT_TRUE(q.find("openbmb/VoxCPM1.5", names));
  const auto missing = q.find("org/none", names);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.err().code, errc::not_found);
}

TEST_F(ModelQueueTest, removingAModelForgetsItAndLeavesTheQueueRunning) {
  model_queue q(*st_, backend_, file(), 1);
  auto& a = q.add(spec("org/a"));
  auto& b = q.add(spec("org/b"));
  EXPECT_EQ(b.state, model_state::queued);
  q.remove(a);
  EXPECT_EQ(q.models().size(), 1u);
  EXPECT_EQ(q.models().at("org/b@main").state, model_state::resolving);
}

TEST_F(ModelQueueTest, unreachableOriginsMakeAModelWaitAndRetryWithGrowingPauses) {
  auto now = std::chrono::steady_clock::now();
  model_queue q(*st_, backend_, file(), 1);
  q.set_clock([&] { return now; });
  q.set_retry_for(std::chrono::hours(1));
  auto& a = q.add(spec("org/a"));
  auto& b = q.add(spec("org/b"));
  backend_.resolving.at("org/a")(make_error(errc::unavailable, "Couldn't resolve host name"));
  EXPECT_EQ(a.state, model_state::waiting);
  EXPECT_EQ(q.model_json(a)["reason"], "Couldn't resolve host name");
  EXPECT_EQ(q.model_json(a)["retry_in_seconds"], 5.0);
  EXPECT_FALSE(q.model_json(a).contains("error"));
  // A waiting model holds no slot: the next one starts.
  EXPECT_EQ(b.state, model_state::resolving);
  backend_.resolving.erase("org/a");
  now += std::chrono::seconds(4);
  q.tick(0.5);
  EXPECT_EQ(a.state, model_state::waiting);
  now += std::chrono::seconds(1);
  q.tick(0.5);
  EXPECT_EQ(a.state, model_state::queued);  // its turn comes when b's slot is free
  backend_.resolving.at("org/b")(make_error(errc::not_found, "no such repo"));
  EXPECT_EQ(b.state, model_state::error);  // a permanent answer fails at once
  EXPECT_EQ(a.state, model_state::resolving);
  backend_.resolving.at("org/a")(make_error(errc::unavailable, "HTTP 503"));
  EXPECT_EQ(q.model_json(a)["retry_in_seconds"], 10.0);  // the pause doubles
  // Progress (the manifest read) forgets the trouble; a blob out of reach makes it wait again.
  now += std::chrono::seconds(10);
  q.tick(0.5);
  const std::string bytes = "hello";
  backend_.resolving.at("org/a")(one_file(bytes));
  EXPECT_EQ(a.state, model_state::downloading);
  const auto blob = backend_.wanted.back().first.blob;
  q.on_blob_done(blob, make_error(errc::unavailable, "connection refused"), {});
  EXPECT_EQ(a.state, model_state::waiting);
  EXPECT_FALSE(backend_.active.at(a.key()));
  EXPECT_EQ(q.model_json(a)["retry_in_seconds"], 5.0);
  // Back: the blob is wanted again and completes.
  now += std::chrono::seconds(5);
  q.tick(0.5);
  EXPECT_EQ(a.state, model_state::downloading);
  EXPECT_EQ(backend_.wanted.back().first.blob, blob);
  put_partial(blob, bytes, a.spec.repo);
  q.on_blob_done(blob, ok(), {});
  EXPECT_EQ(a.state, model_state::complete);
}

TEST_F(ModelQueueTest, aModelWaitingLongerThanRetryForFailsNamingTheWait) {
  auto now = std::chrono::steady_clock::now();
  model_queue q(*st_, backend_, file(), 1);
  q.set_clock([&] { return now; });
  q.set_retry_for(std::chrono::minutes(10));
  auto& a = q.add(spec("org/a"));
  for (int i = 0; i < 20 && a.state != model_state::error; ++i) {
    backend_.resolving.at("org/a")(make_error(errc::unavailable, "connection refused"));
    if (a.state == model_state::waiting) {
      EXPECT_LE(q.model_json(a)["retry_in_seconds"].get<double>(), 300.0);
      now += std::chrono::seconds(300);
      q.tick(0.5);
    }
  }
  EXPECT_EQ(a.state, model_state::error);
  EXPECT_EQ(a.error, "connection refused (gave up after retrying for 10m)");
  // A waiting model survives a restart as waiting and is tried again at the first tick.
  auto& b = q.add(spec("org/b"));
  backend_.resolving.at("org/b")(make_error(errc::unavailable, "connection refused"));
  ASSERT_EQ(b.state, model_state::waiting);
  model_queue again(*st_, backend_, file(), 1);
  ASSERT_TRUE(again.load());
  EXPECT_EQ(again.models().at("org/b@main").state, model_state::waiting);
  again.tick(0.5);
  EXPECT_EQ(again.models().at("org/b@main").state, model_state::resolving);
}

TEST_F(ModelQueueTest, aModelWaitsForRoomInTheStoreAndStartsWhenThereIs) {
  auto now = std::chrono::steady_clock::now();
  model_queue q(*st_, backend_, file(), 1);
  q.set_clock([&] { return now; });
  q.set_retry_for(std::chrono::seconds(0));  // a full disk is waited for however long it takes
  q.set_space(space_spec{space_spec::kind::bytes, 4, 0}, space_spec{});
  auto& a = q.add(spec("org/a"));
  backend_.resolving.at("org/a")(one_file("hello"));
  EXPECT_EQ(a.state, model_state::waiting);
  EXPECT_TRUE(backend_.wanted.empty());  // nothing started
  EXPECT_EQ(q.model_json(a)["reason"],
            "store full: need 5 B, the store holds 0 B of its store.max_size 4 B");
  now += std::chrono::minutes(10);
  q.tick(0.5);
  EXPECT_EQ(a.state, model_state::waiting);  // still no room, still waiting
  q.set_space(space_spec{}, space_spec{});
  now += std::chrono::seconds(5);
  q.tick(0.5);
  EXPECT_EQ(a.state, model_state::downloading);
  EXPECT_EQ(backend_.wanted.size(), 1u);
}
