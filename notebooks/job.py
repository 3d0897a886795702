
import ray
ray.init()

@ray.remote
def square(x):
    return x * x

print(sum(ray.get([square.remote(i) for i in range(100)])))
ray.shutdown()
