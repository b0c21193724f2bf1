from reconciler.domain import AnyEnvironment, Environment


def test_happy_path_round_trips_through_json() -> None:
    env = Environment.create("web").start_provisioning().provisioned(phase_hash="h1")
    text = env.into_any().to_json()
    back = AnyEnvironment.from_json(text)
    assert back == env.into_any()
    assert back.state_name == "provisioned"
