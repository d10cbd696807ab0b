"""The research pages and the loop's admin: who may see them (anonymous users log in first,
annotators get a 403, researchers and admins the page), what they show for an iteration with
data and one without, and the admin's cancel action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rlhf.models import Iteration
from tests.rlhf.research_fixtures import (
    evaluated_policy,
    new_iteration,
    rejection_ppo_iteration,
    serve_two_versions,
)

# How a chart starts (rlhf.charts.render_svg); admin draws its icons as SVG too.
CHART = '<svg role="img"'


@pytest.fixture
def browser_client(client, people):
    """A Django test client logged in as a role ("anonymous" stays logged out)."""

    def make(role: str):
        if role != "anonymous":
            client.force_login(getattr(people, role))
        return client

    return make


@pytest.fixture
def superuser_client(client, make_user):
    boss = make_user("boss", staff=True)
    boss.is_superuser = True
    boss.save()
    client.force_login(boss)
    return client


def pages(world) -> list[str]:
    return [reverse("research:home"), reverse("research:iteration", args=[world.iteration.pk])]


def test_anonymous_users_are_sent_to_log_in(world, browser_client):
    for url in pages(world):
        response = browser_client("anonymous").get(url)
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('login')}?next={url}"


def test_annotators_are_refused(world, browser_client):
    for url in pages(world):
        response = browser_client("annotator").get(url)
        assert response.status_code == 403
        assert "You are not a researcher" in response.content.decode()


@pytest.mark.parametrize("role", ["researcher", "admin"])
def test_researchers_and_admins_see_the_pages(world, browser_client, role):
    for url in pages(world):
        assert browser_client(role).get(url).status_code == 200


def test_the_research_page_lists_iterations_versions_and_the_charts(
    world, browser_client, django_assert_max_num_queries
):
    evaluated_policy("iteration-9-policy", world.base, iteration=world.iteration)
    serve_two_versions(world.closed, winner=world.trained, loser=world.base)
    client = browser_client("researcher")
    with django_assert_max_num_queries(12):  # not one more per iteration or version
        response = client.get(reverse("research:home"))
    page = response.content.decode()
    iteration_url = reverse("research:iteration", args=[world.iteration.pk])
    assert f'href="{iteration_url}"' in page
    assert "iteration-9-policy" in page
    assert 'id="chart-policy-progression"' in page and 'id="chart-version-ratings"' in page
    assert page.count(CHART) == 2  # both have data
    ratings = response.context["ratings"]
    assert [r.version for r in ratings["ratings"]] == [world.trained.name, world.base.name]
    assert 'id="ratings"' in page


def test_the_research_page_without_data_says_so(world, browser_client):
    page = browser_client("researcher").get(reverse("research:home")).content.decode()
    assert CHART not in page
    assert page.count('class="no-data"') == 3  # two figures and the ratings table


def test_an_iterations_page_shows_its_steps_progress_log_and_charts(world, browser_client):
    iteration = rejection_ppo_iteration(world.base, created_by=world.iteration.created_by)
    iteration.log_path.write_text("".join(f"line {i}\n" for i in range(100)))
    response = browser_client("researcher").get(reverse("research:iteration", args=[iteration.pk]))
    page = response.content.decode()
    assert page.count(CHART) == 6
    assert 'id="chart-ppo-kl"' in page
    assert "step 3 of 8" in page
    assert '<meta http-equiv="refresh"' in page  # running: the page follows it
    steps = page[page.index('id="steps"') : page.index("</table>", page.index('id="steps"'))]
    assert steps.count("<tr>") == 1 + len(Iteration.step_names(iteration.algorithm))
    log = response.context["log_tail"]
    assert log[0] == "line 60" and log[-1] == "line 99"


def test_an_iteration_without_data_shows_no_data_yet(world, browser_client):
    iteration = new_iteration(world.base, "dpo", status=Iteration.Status.FAILED, error="boom")
    response = browser_client("researcher").get(reverse("research:iteration", args=[iteration.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert CHART not in page and page.count("No data yet") == 4
    assert "No log yet" in page and "boom" in page
    assert '<meta http-equiv="refresh"' not in page
    missing = reverse("research:iteration", args=[iteration.pk + 1000])
    assert browser_client("researcher").get(missing).status_code == 404


# --- admin ----------------------------------------------------------------------------------


def test_the_iteration_admin_lists_and_filters(world, superuser_client):
    rejection_ppo_iteration(world.base)
    url = reverse("admin:rlhf_iteration_changelist")
    response = superuser_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "3/8 (38%) (sample)" in page  # the running one's progress
    assert superuser_client.get(url, {"status": "running"}).context["cl"].result_count == 1
    assert superuser_client.get(url, {"algorithm": "dpo"}).context["cl"].result_count == 1
    assert reverse("admin:rlhf_iteration_add") not in page


def test_the_iteration_admin_page_shows_steps_and_charts(world, superuser_client):
    iteration = rejection_ppo_iteration(world.base)
    response = superuser_client.get(reverse("admin:rlhf_iteration_change", args=[iteration.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="iteration-figures"' in page and page.count(CHART) == 6
    assert "reward_helpfulness" in page  # the steps inline
    assert 'name="_save"' not in page  # read only


def test_the_iteration_admin_page_without_data(world, superuser_client):
    response = superuser_client.get(
        reverse("admin:rlhf_iteration_change", args=[world.iteration.pk])
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert CHART not in page and page.count("No data yet") == 4
    assert "no log yet" in page


def test_the_cancel_action_goes_through_the_service(world, superuser_client):
    running = rejection_ppo_iteration(world.base)
    finished = new_iteration(world.base, "dpo", status=Iteration.Status.SUCCEEDED)
    response = superuser_client.post(
        reverse("admin:rlhf_iteration_changelist"),
        {"action": "cancel", "_selected_action": [world.iteration.pk, running.pk, finished.pk]},
        follow=True,
    )
    assert response.status_code == 200
    statuses = dict(Iteration.objects.values_list("pk", "status"))
    assert statuses[world.iteration.pk] == Iteration.Status.CANCELLED  # queued, no worker
    assert statuses[running.pk] == Iteration.Status.CANCELLING  # stops at its next step
    assert statuses[finished.pk] == Iteration.Status.SUCCEEDED
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0].startswith("Cancelling 2 iterations")
    assert f"{finished.pk}: the iteration has already succeeded" in messages[1]


def test_the_model_version_admin_shows_lineage_and_metrics(world, superuser_client):
    child = evaluated_policy("iteration-9-policy", world.trained, iteration=world.iteration)
    response = superuser_client.get(reverse("admin:rlhf_modelversion_change", args=[child.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "ancestors:" in page and world.trained.name in page and world.base.name in page
    assert "mean_helpfulness_policy" in page
    response = superuser_client.get(reverse("admin:rlhf_modelversion_changelist"))
    assert response.status_code == 200
    assert (
        'name="_save"'
        in superuser_client.get(
            reverse("admin:rlhf_modelversion_change", args=[world.base.pk])
        ).content.decode()
    )  # still editable, as before
