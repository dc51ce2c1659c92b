import am
from am.problems import make_problem

# A base with an exact velocity, a reward, and the exact tilted target p_base exp(lambda r).
problem = make_problem("gmm2d_overlap_quadratic", am.FlowMatchingSchedule(), reward_scale=1.0)
result = am.finetune(
    problem.velocity,
    problem.reward,
    schedule=problem.schedule,
    sample_shape=(2,),
    reward_scale=1.0,
    train=am.TrainConfig(iterations=800),
)
x = am.sample(
    result.model,
    5000,
    (2,),
    schedule=problem.schedule,
    num_steps=100,
    diffusion=am.make_diffusion("ode", problem.schedule),
)  # or "memoryless", or 0.5
print(f"{result.seconds:.0f} s;", problem.distance_to_target(x))
